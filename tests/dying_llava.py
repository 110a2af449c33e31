"""`dfa-bench eval` in which the rank-1 process of a multi-process run is killed (SIGKILL) mid-run.

Started by `accelerate launch` in tests/test_multiprocess.py. `DyingLlava` is `dfa_llava` (same name, so
the same cache fingerprint: its answers are dfa_llava's) that kills its own process, on rank 1, when asked
for a second batch: the first batch's answers were already appended to the process's response file.
"""

from __future__ import annotations

import os
import signal

from lmms_eval.models import MODEL_REGISTRY_V2
from lmms_eval.models.registry_v2 import ModelManifest

from dfa_bench.adapters.llava import DFALlava


class DyingLlava(DFALlava):
    name = "dfa_llava"

    def answer(self, queries):
        self.batches = getattr(self, "batches", 0) + 1
        if self.rank == 1 and self.batches == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().answer(queries)


if __name__ == "__main__":
    MODEL_REGISTRY_V2.register_manifest(
        ModelManifest(model_id="dying_llava", simple_class_path="dying_llava.DyingLlava"), overwrite=True
    )
    from dfa_bench.cli import main

    main()
