"""Make the top-level modules importable from tests/ and run torch on one thread."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tasks  # noqa: E402


# the tests' models are tiny, so a second intra-op thread only adds synchronisation (on a busy 2-core machine
# tests/test_updates.py took 50 s with 2 threads and 3 s with 1); train.main(["--threads", N]) may change it
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """train.main([..., "--threads", N]) sets torch's thread count for the whole process: put it back after each
    test, so that one test's setting does not leak into the rest (on a 2-core machine busy with another process,
    2 threads left behind by the SFT smoke test made the GRPO smoke test take 111 s instead of 3 s)."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tok():
    """A byte-level BPE tokenizer of 300 tokens trained on the R1-format solutions of every a+b with one-digit a and
    b, for tests of scripted policies (a test file with its own `tok` fixture uses that one instead)."""
    texts = [tasks.format_prompt(f"What is {a}+{b}?") + f" <think> {a}+{b} = <<{a}+{b}={a + b}>>{a + b} </think> "
             f"<answer> {a + b} </answer>" for a in range(10) for b in range(10)]
    return tasks.train_tokenizer(texts, 300)
