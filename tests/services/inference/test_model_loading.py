"""Loading models from several threads at once leaves the process's stdout and stderr alone."""

from __future__ import annotations

import os
import threading

from services.inference.models import open_llama
from services.inference.settings import bundled_model_path


def _stdio() -> list[tuple[int, int]]:
    return [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]


def test_concurrent_loads_leave_stdout_and_stderr_where_they_were() -> None:
    # llama-cpp-python points fds 1 and 2 at /dev/null while it loads; unserialized loads in
    # several threads (two slots and the tokenizer, say) can leave them there, and the
    # service's logs would go nowhere.
    before = _stdio()
    start = threading.Barrier(6)

    def load() -> None:
        start.wait()
        for _ in range(4):
            open_llama(bundled_model_path(), vocab_only=True).close()

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _stdio() == before
