"""Source readers: turn distributed datasets into frame entries for the DFA-Instruct pipeline."""
