"""DFA-Instruct: the paper's data construction (section III-A).

Sources (DF-40 / DeepfakeBench JSON, CSV manifests, videos) -> face detection and alignment (`faces`) ->
identity-disjoint splits (`split`) -> artifact descriptions (`regions`, `annotate`) and free conversations
(`conversations`) -> LLaVA-format training JSON (`llava_json`) and dev/test benches (`pipeline`).
DFA-Bench-mini (`mini`, `forge`) builds the embedded default offline; `stats` draws Fig. 3.
Heavy libraries (torch, facenet-pytorch, OpenCV, PyAV, matplotlib) are imported lazily, where used.
"""
