"""R1-Zero's starting point: a base model, pretrained by next-token prediction on plain text.

DeepSeek-R1-Zero (arXiv 2501.12948, §2.2) is GRPO applied directly to a base model (DeepSeek-V3-Base) with the
Table 1 template and rule rewards only: no supervised data in the chat format. A model trained from scratch has
no base, so this file makes one: one plain-text document per training problem, written the ways such text is
written outside a chat (no template, no <think>/<answer> tags), and next-token prediction on every token of it.
`python train.py --pipeline r1_zero` pretrains on them (stage "pretrain", sft.run_sft's loop), then runs GRPO from
that base with the R1-Zero template (design: A base model for R1-Zero).

    STYLES              how a document states a problem: GSM8K's own text, a prose solution, or the answer alone
    document            one problem as plain text in a style
    transcript          an R1-Zero transcript: the Table 1 prompt, then the completion in its tags
    pretrain_documents  the corpus: a document per training problem, its style drawn with the seed, and a share
                        --pretrain_format_frac of transcripts (0: none, a base that never saw the tags)
    pretrain_examples   ([EOS], document ids + EOS) each: run_sft's examples with the loss on every document token

>>> p = tasks.Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\\n2+12 = <<2+12=14>>14", "14")
>>> print(document(p, "gsm8k"))
What is 2+3*4?
3*4 = <<3*4=12>>12
2+12 = <<2+12=14>>14
#### 14
>>> print(document(p, "prose"))
Question: What is 2+3*4?
Solution: 3*4 = <<3*4=12>>12
2+12 = <<2+12=14>>14
The answer is 14.
>>> print(document(p, "answer"))
Q: What is 2+3*4?
A: 14
"""

from __future__ import annotations

import random

import sft
import tasks

# The styles of a document, each a plain-text form that worked solutions take outside a chat:
#   gsm8k:  the question, the worked lines, "#### N": the GSM8K dataset's own text. rewards.extract_answer reads
#           "####" as an answer marker, so this is the one style whose answers the accuracy reward can see.
#   prose:  "Question:", "Solution:" and the worked lines, "The answer is N.": no marker that the rewards read.
#   answer: "Q:", "A: N": the answer alone, a fact (like the cold start's direct answers).
STYLES = ("gsm8k", "prose", "answer")


def document(p: tasks.Problem, style: str) -> str:
    """One problem as a plain-text document in `style` (one of STYLES): no template, no tags."""
    if style == "gsm8k":
        return f"{p.question}\n{tasks.gsm8k_solution(p)}"
    if style == "prose":
        return f"Question: {p.question}\nSolution: {p.reasoning}\nThe answer is {p.answer}."
    if style == "answer":
        return f"Q: {p.question}\nA: {p.answer}"
    raise ValueError(f"unknown document style {style!r}; allowed: {', '.join(STYLES)}")


def transcript(p: tasks.Problem) -> str:
    """An R1-Zero transcript: the R1 template's prompt (DeepSeek-R1 Table 1) and the worked completion in its tags,
    exactly what RL will see and reward. Pretraining text holds a few such formatted examples only when asked to
    (--pretrain_format_frac): the smallest change that shows the base the format.

    >>> transcript(tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"))[-68:]
    '?. Assistant: <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>'
    """
    return tasks.format_prompt(p.question, "r1") + tasks.format_completion(p)


def pretrain_documents(problems, seed: int, format_frac: float = 0.0) -> list[str]:
    """One document per problem: a transcript with probability format_frac, else a plain document in a style drawn
    uniformly from STYLES; every draw from Random(f"{seed}-pretrain"), so the corpus is a function of the seed.

    >>> docs = pretrain_documents([tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")] * 300, seed=0)
    >>> sorted({d.split(chr(10))[0][:9] for d in docs}), any("<think>" in d for d in docs)
    (['Q: What i', 'Question:', 'What is 2'], False)
    """
    if not 0 <= format_frac <= 1:
        raise ValueError(f"format_frac={format_frac}: a share, between 0 and 1")
    rng = random.Random(f"{seed}-pretrain")
    docs = []
    for p in problems:
        formatted, style = rng.random() < format_frac, rng.choice(STYLES)  # two draws each, whichever is used
        docs.append(transcript(p) if formatted else document(p, style))
    return docs


def pretrain_examples(docs: list[str], tok, max_len: int) -> list[tuple[list[int], list[int]]]:
    """([EOS], document ids + EOS) per document, for sft.run_sft: the EOS before a document is its "prompt" (as
    GPT-2 separates documents by its end-of-text token), so the loss covers every token of the document and the
    EOS that ends it. Documents longer than max_len are dropped, and said."""
    eos = tasks.eos_id(tok)
    examples = [([eos], e.ids + [eos]) for e in tok.encode_batch(docs, add_special_tokens=False)]
    return sft.fitting(examples, max_len, "document")
