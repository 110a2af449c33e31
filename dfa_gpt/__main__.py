from dfa_gpt.cli import main

main()
