"""Tasks: the problems, the prompt format and the tokenizer; everything a model needs to *see*. Nothing here
knows about models or training.

    Problem                     a question, its worked solution (GSM8K style) and its integer answer string
    with_rechecks, RECHECK      worked solutions with a slip caught ("wait, re-check:"); count_rechecks, difficulty
    arithmetic_problem          expressions like 347*6+125-89, worked step by step (word_problems.py: stories)
    load_gsm8k, split_gsm8k     the real GSM8K JSONL files, strictly parsed; train without test's questions
    make_splits                 leak-free generated train/test splits; 'mix' shuffles arithmetic and word ones
    task_of                     which generator wrote a problem: 'arithmetic' or 'word'
    parse_mix, apportion        a task mixture 'arithmetic:1,word:3' as weights; a batch split by them
    Mixture                     the questions of an RL step, drawn by task in the mixture's shares
    format_prompt, TEMPLATES    the prompt: DeepSeek-R1's template verbatim ('r1'), a compact one, or R1-Zero's
                                instruction in a pretrained model's chat format ('r1_chatml', 'r1_llama3')
    check_template              a chat template refused with a tokenizer that lacks its special tokens
    format_completion           the SFT target: <think> worked steps </think> <answer> N </answer>
    train_tokenizer             byte-level BPE, every digit its own token; encode, decode
    run_tokenizer               a run's tokenizer: train_tokenizer on its first 20k training problems
    eos_id                      the token that ends a completion, read from the tokenizer
    token_spans                 which characters of the decoded text each token supplies
    tokenize_problems           (prompt ids, worked-solution ids + EOS) of a list of problems

The choices behind them (calculator steps written as GSM8K writes them, integer answers, digit count
first, leak-free splits, one token per digit, the compact template, seeded generators) are
docs/design.md's choices 1-8.
"""

import codecs
import json
import math
import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


@dataclass(frozen=True)
class Problem:
    """One problem. Frozen, so problems can be compared, hashed and shared safely."""

    question: str  # the question text
    reasoning: str  # worked solution without the final "#### N" line
    answer: str  # the final answer, a normalised integer string: "72", "-5"


def gsm8k_solution(p: Problem) -> str:
    """The solution in GSM8K's exact `answer` field format.

    >>> gsm8k_solution(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"))
    '2+3 = <<2+3=5>>5\\n#### 5'
    """
    return p.reasoning + "\n#### " + p.answer


def annotate(expr: str, value: int) -> str:
    """One calculator step, exactly as GSM8K writes it.

    >>> annotate("347*6", 2082)
    '347*6 = <<347*6=2082>>2082'
    """
    return f"{expr} = <<{expr}={value}>>{value}"


# -----------------------------------------------------------------------------
# Arithmetic generator


# A caught slip, the "aha" question made countable (design: Re-check traces): a calculator step written with a
# wrong result, these words, then the step again, right.
RECHECK = "wait, re-check:"
_STEP = re.compile(r"(\S+) = <<\1=(-?\d+)>>\2")  # one calculator step as annotate writes it, integer result


def with_recheck(p: Problem, rng: random.Random) -> Problem:
    """The problem with one slip caught in its worked solution: a step drawn by rng is first written with one digit
    of its result off by one, then RECHECK, then written right; the rest and the answer unchanged. A solution
    without an integer calculator step is returned as it is.

    >>> p = Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\\n2+12 = <<2+12=14>>14", "14")
    >>> print(with_recheck(p, random.Random(1)).reasoning)
    3*4 = <<3*4=2>>2 wait, re-check: 3*4 = <<3*4=12>>12
    2+12 = <<2+12=14>>14
    """
    steps = list(_STEP.finditer(p.reasoning))
    if not steps:
        return p
    step = rng.choice(steps)
    value = int(step.group(2))
    wrong = value + rng.choice((-1, 1)) * 10 ** rng.randrange(len(str(abs(value))))
    slip = f"{annotate(step.group(1), wrong)} {RECHECK} "
    return Problem(p.question, p.reasoning[:step.start()] + slip + p.reasoning[step.start():], p.answer)


def with_rechecks(problems: list[Problem], frac: float, seed: int) -> list[Problem]:
    """Each problem with_recheck with probability frac (--recheck_frac), drawn from Random(f"{seed}-recheck")."""
    if not 0 <= frac <= 1:
        raise ValueError(f"recheck_frac={frac}: a share, between 0 and 1")
    rng = random.Random(f"{seed}-recheck")
    return [with_recheck(p, rng) if rng.random() < frac else p for p in problems]


def count_rechecks(text: str) -> int:
    """How many times a completion catches a slip: the occurrences of RECHECK.

    >>> count_rechecks("3*4 = <<3*4=13>>13 wait, re-check: 3*4 = <<3*4=12>>12"), count_rechecks("3*4 = <<3*4=12>>12")
    (1, 0)
    """
    return text.count(RECHECK)


def difficulty(p: Problem) -> int:
    """A problem's number of calculator steps in its worked solution, a slip caught not counted.

    >>> difficulty(Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\\n2+12 = <<2+12=14>>14", "14"))
    2
    """
    return p.reasoning.count("<<") - count_rechecks(p.reasoning)


def _random_number(rng: random.Random, max_digits: int, minimum: int = 0) -> int:
    """A number with a uniform digit count in 1..max_digits, then a uniform value.

    Drawing the length first keeps small numbers common (design: Digit count first). `minimum`
    only affects 1-digit numbers: factors of a product use minimum=2, since
    x*0 and x*1 teach nothing. Multi-digit numbers never start with 0.

    >>> 0 <= _random_number(random.Random(0), 3) <= 999
    True
    """
    n_digits = rng.randint(1, max_digits)
    if n_digits == 1:
        return rng.randint(minimum, 9)
    return rng.randint(10 ** (n_digits - 1), 10**n_digits - 1)


def _random_operators(rng: random.Random, n_ops: int, ops: str) -> list[str]:
    """n_ops operators drawn from ops, with no two '*' in a row.

    A product is always a*b (never a*b*c), so we redraw the whole sequence
    when two '*' touch: this keeps every valid sequence equally likely.

    >>> _random_operators(random.Random(0), 3, "+")
    ['+', '+', '+']
    """
    while True:
        operators = [rng.choice(ops) for _ in range(n_ops)]
        if "**" not in "".join(operators):
            return operators


def _random_operands(
    rng: random.Random, operators: list[str], digits: int, mul_digits: int
) -> list[int]:
    """One operand per gap around the operators; factors of a '*' are >= 2.

    The left factor has up to `digits` digits, the right one up to `mul_digits`.

    >>> len(_random_operands(random.Random(0), ["+", "*"], 3, 1))
    3
    """
    operands = []
    for i in range(len(operators) + 1):
        right_factor = i > 0 and operators[i - 1] == "*"
        left_factor = i < len(operators) and operators[i] == "*"
        if right_factor:
            operands.append(_random_number(rng, mul_digits, minimum=2))
        else:
            operands.append(_random_number(rng, digits, 2 if left_factor else 0))
    return operands


def _calculator_steps(operands: list[int], operators: list[str]) -> tuple[list[str], list[int]]:
    """Solve like a pupil with a calculator: products first, then the +/- chain.

    Returns the step lines and the value after each step (last = answer).

    >>> _calculator_steps([347, 6, 125, 89], ["*", "+", "-"])[1]
    [2082, 2207, 2118]
    """
    steps, values = [], []
    terms, signs = [operands[0]], []
    for op, x in zip(operators, operands[1:]):  # 1. every product, left to right
        if op == "*":
            product = terms[-1] * x  # terms[-1] is a plain operand: '*' never chains
            steps.append(annotate(f"{terms[-1]}*{x}", product))
            values.append(product)
            terms[-1] = product
        else:
            signs.append(op)
            terms.append(x)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):  # 2. the +/- chain, left to right
        new_total = total + term if sign == "+" else total - term
        steps.append(annotate(f"{total}{sign}{term}", new_total))
        values.append(new_total)
        total = new_total
    return steps, values


def _check_arithmetic_knobs(digits, mul_digits, min_ops, max_ops, ops) -> None:
    """Fail early on knobs that could only produce nonsense or loop forever."""
    if not ops or set(ops) - set("+-*"):
        raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
    if digits < 1 or mul_digits < 1:
        raise ValueError(f"digits and mul_digits must be >= 1, got {digits}, {mul_digits}")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops}, {max_ops}")
    if set(ops) == {"*"} and max_ops > 1:
        raise ValueError("with ops='*' only, max_ops must be 1: '*' never chains")


def arithmetic_problem(
    rng: random.Random,
    digits: int = 3,
    mul_digits: int = 1,
    min_ops: int = 2,
    max_ops: int = 3,
    ops: str = "+-*",
    allow_negative: bool = False,
) -> Problem:
    """A +/- chain of numbers and a*b products, solved step by step.

    >>> p = arithmetic_problem(random.Random(0))
    >>> p.question.startswith("What is ") and p.question.endswith("?")
    True
    >>> p.reasoning.splitlines()[-1].endswith(p.answer)
    True
    """
    _check_arithmetic_knobs(digits, mul_digits, min_ops, max_ops, ops)
    for _ in range(100_000):  # redraw the whole problem until nothing goes negative
        operators = _random_operators(rng, rng.randint(min_ops, max_ops), ops)
        operands = _random_operands(rng, operators, digits, mul_digits)
        steps, values = _calculator_steps(operands, operators)
        if allow_negative or min(values) >= 0:
            expr = str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(operators, operands[1:]))
            return Problem(f"What is {expr}?", "\n".join(steps), str(values[-1]))
    raise ValueError(f"could not draw a non-negative problem with ops={ops!r}; allow_negative?")


# -----------------------------------------------------------------------------
# Real GSM8K


def _parse_gsm8k_record(line: str) -> Problem:
    """One JSONL line -> Problem. Raises ValueError with the reason (no location)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for key in ("question", "answer"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"missing or non-string field {key!r}")
    reasoning, marker, final = record["answer"].rpartition("####")
    if not marker:
        raise ValueError("answer has no '####' final-answer marker")
    answer = final.strip().replace(",", "")  # "1,000" -> "1000"
    if not answer:
        raise ValueError("empty final answer after '####'")
    return Problem(record["question"], reasoning.rstrip(), answer)


def load_gsm8k(path) -> list[Problem]:
    """Read a GSM8K JSONL file ({"question": ..., "answer": "...\\n#### 72"}).

    Annotations like <<48/2=24>> are kept unchanged; blank lines are skipped;
    any malformed line stops the load with "path:lineno: reason", because a
    silently skipped problem would quietly change the benchmark.

    >>> load_gsm8k("gsm8k/test.jsonl")[0].answer  # doctest: +SKIP
    '18'
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GSM8K file not found: {path}")
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                problems.append(_parse_gsm8k_record(line))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
    return problems


# -----------------------------------------------------------------------------
# Prompt templates

# DeepSeek-R1 paper, Table 1, verbatim, with {prompt} where the question goes.
# The paper writes "User: prompt. Assistant:" and we keep that period
# literally, so a question ending in "?" reads "...?. Assistant:". Being
# faithful to the published template matters more than the typography.
R1_ZERO_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>."
)
R1_ZERO_TEMPLATE = R1_ZERO_INSTRUCTION + " User: {prompt}. Assistant:"

# Departure from the paper: a model trained from scratch gains nothing from the
# 60-word system text (it carries no information it could understand), and the
# text would triple the sequence length on a CPU. The completion format, the
# <think>/<answer> tags, is unchanged, so the rewards are the same.
COMPACT_TEMPLATE = "User: {prompt}\nAssistant:"

# A pretrained instruct model's own chat format (design: Chat templates), written out by hand as
# pretrained.chat_prompt writes it: R1-Zero's instruction above as the system turn, the question as the user
# turn, the assistant's turn opened. The completion format, the <think>/<answer> tags, and so the rewards are
# the same as with the other templates. The special tokens exist only in the tokenizer of a model trained with
# that format (Qwen2's ChatML, Llama 3's headers): check_template refuses any other tokenizer.
CHATML_TEMPLATE = (
    "<|im_start|>system\n" + R1_ZERO_INSTRUCTION + "<|im_end|>\n"
    "<|im_start|>user\n{prompt}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
LLAMA3_TEMPLATE = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + R1_ZERO_INSTRUCTION + "<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

TEMPLATES = {"r1": R1_ZERO_TEMPLATE, "compact": COMPACT_TEMPLATE, "r1_chatml": CHATML_TEMPLATE,
             "r1_llama3": LLAMA3_TEMPLATE}
# The special tokens each chat template writes (pretrained.CHAT_TOKENS tells the formats apart by the same ones)
TEMPLATE_TOKENS = {"r1_chatml": ("<|im_start|>", "<|im_end|>"),
                   "r1_llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}
CHAT_TEMPLATES = tuple(TEMPLATE_TOKENS)


def format_prompt(question: str, template: str = "compact") -> str:
    """The prompt the model continues. Llama 3's template trims the question (its chat template does: `| trim`).

    >>> format_prompt("What is 2+3?")
    'User: What is 2+3?\\nAssistant:'
    >>> format_prompt("What is 2+3?", "r1_chatml")[-62:]
    '<|im_start|>user\\nWhat is 2+3?<|im_end|>\\n<|im_start|>assistant\\n'
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; allowed: {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(prompt=question.strip() if template == "r1_llama3" else question)


def check_template(tok: Tokenizer, template: str) -> None:
    """A ValueError naming --template and the tokens if `template` writes special tokens the tokenizer does not
    have as single tokens: a tokenizer without them (the one trained here) would split each into bytes, and the
    model would read a format it was never trained on."""
    missing = [t for t in TEMPLATE_TOKENS.get(template, ()) if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"--template {template} writes the special tokens {', '.join(TEMPLATE_TOKENS[template])}, "
                         f"and this tokenizer lacks {', '.join(missing)}: give a template the tokenizer has "
                         f"(compact or r1 for a tokenizer trained here; the chat template of --init_from's model)")


def completion_lead(template: str) -> str:
    """What a completion starts with: a space after "Assistant:" (compact, r1); nothing after a chat template's
    assistant header, which ends in a newline, as an instruct model's own turns start."""
    return "" if template in CHAT_TEMPLATES else " "


def format_completion(p: Problem, show_work: bool = True, template: str = "compact") -> str:
    """The SFT target in the R1 format; reasoning lines keep their newlines.

    The leading space separates it from "Assistant:" (none after a chat template's header: completion_lead).
    No <eos> here: the training code appends eos_id(tok) to the token ids. With show_work=False the
    <think> block is empty: the answer with no worked steps, the kind of
    target a mixed-quality cold start holds (train.py --sft_direct_frac).

    >>> format_completion(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"))
    ' <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>'
    >>> format_completion(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"), show_work=False)
    ' <think> </think> <answer> 5 </answer>'
    >>> format_completion(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"), template="r1_chatml")
    '<think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>'
    """
    lead = completion_lead(template)
    if not show_work:
        return f"{lead}<think> </think> <answer> {p.answer} </answer>"
    return f"{lead}<think> {p.reasoning} </think> <answer> {p.answer} </answer>"


# -----------------------------------------------------------------------------
# Splits


def normalise_question(q: str) -> str:
    """The key used to detect duplicates: lowercase, single spaces, stripped.

    >>> normalise_question("  What IS\\n2+3? ")
    'what is 2+3?'
    """
    return " ".join(q.lower().split())


def _unique_problems(draw, n: int, exclude: set[str], what: str) -> list[Problem]:
    """Draw n problems whose normalised questions are new (not in exclude, not repeated).

    The number of draws is bounded so that a too-small problem space fails
    loudly instead of looping forever. `exclude` is updated in place.
    """
    problems, max_draws = [], 50 * n + 1000
    for _ in range(max_draws):
        if len(problems) == n:
            break
        p = draw()
        key = normalise_question(p.question)
        if key not in exclude:
            exclude.add(key)
            problems.append(p)
    if len(problems) < n:
        raise ValueError(
            f"could only find {len(problems)} unique {what} problems out of {n} requested in "
            f"{max_draws} draws: the problem space is too small; use harder knobs "
            f"(more digits, mul_digits or max_ops)"
        )
    return problems


TASKS = ("arithmetic", "word", "mix")  # 'mix': both generators, a share word_frac of word problems
KINDS = ("arithmetic", "word")  # what one generated problem can be (task_of)
TASK_KINDS = {"arithmetic": ("arithmetic",), "word": ("word",), "mix": KINDS, "gsm8k": ("word",)}  # what a task holds
ARITHMETIC_QUESTION = re.compile(r"What is [0-9+*-]+\?")


def task_of(p: Problem) -> str:
    """Which generator wrote a problem: 'arithmetic' ("What is 347*6+125?"), else 'word'.

    >>> task_of(Problem("What is 2+3*4?", "", "14")), task_of(Problem("Ann has 3 pens. How many?", "", "3"))
    ('arithmetic', 'word')
    """
    return "arithmetic" if ARITHMETIC_QUESTION.fullmatch(p.question) else "word"


def split_knobs(config: dict) -> dict:
    """The keyword arguments of make_splits that a run's config (a TrainConfig as a dict) gives its task."""
    if config["task"] not in ("arithmetic", "mix"):
        return {}
    arithmetic = {k: config[k] for k in ("digits", "mul_digits", "min_ops", "max_ops")}
    return arithmetic if config["task"] == "arithmetic" else {**arithmetic, "word_frac": config["word_frac"]}


def make_splits(
    task: str, n_train: int, n_test: int, seed: int, word_frac: float = 0.5, **knobs
) -> tuple[list[Problem], list[Problem]]:
    """Leak-free synthetic train/test splits (design: Leak-free splits).

    Test is drawn first from its own seed, so it does not change with n_train.
    knobs go to arithmetic_problem (digits=, ops=, ...). 'mix' is round(word_frac * n) word problems and the
    rest arithmetic, each part the split of its own task with the same seed, shuffled together (seeded).

    >>> train, test = make_splits("arithmetic", 20, 10, seed=0)
    >>> len(train), len(test)
    (20, 10)
    >>> train, test = make_splits("mix", 20, 10, seed=0, word_frac=0.3)
    >>> [sum(task_of(p) == "word" for p in split) for split in (train, test)]
    [6, 3]
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {list(TASKS)}")
    if task == "word" and knobs:
        raise ValueError(f"the word task takes no knobs, got {sorted(knobs)}")
    if task == "mix":
        if not 0 <= word_frac <= 1:
            raise ValueError(f"word_frac={word_frac}: a share, between 0 and 1")
        n_word = lambda n: round(word_frac * n)
        arithmetic = make_splits("arithmetic", n_train - n_word(n_train), n_test - n_word(n_test), seed, **knobs)
        word = make_splits("word", n_word(n_train), n_word(n_test), seed)
        train = arithmetic[0] + word[0]
        test = arithmetic[1] + word[1]  # shuffled with its own seed: its order does not change with n_train either
        return (random.Random(f"{seed}-mix").sample(train, len(train)),
                random.Random(f"{seed}-mix-test").sample(test, len(test)))
    import word_problems  # imported here: word_problems builds on this module's Problem

    generate = arithmetic_problem if task == "arithmetic" else word_problems.word_problem
    draw_test = partial(generate, random.Random(f"{seed}-test"), **knobs)
    draw_train = partial(generate, random.Random(f"{seed}-train"), **knobs)
    seen: set[str] = set()
    test = _unique_problems(draw_test, n_test, seen, f"{task} test")
    train = _unique_problems(draw_train, n_train, seen, f"{task} train")
    return train, test


def parse_mix(text: str) -> dict[str, float]:
    """A task mixture 'arithmetic:0.5,word:0.5' -> {'arithmetic': 0.5, 'word': 0.5}, weights normalised to sum 1;
    '' -> {} (no mixture: every training problem alike). A ValueError names what is wrong.

    >>> parse_mix("arithmetic:3,word:1")
    {'arithmetic': 0.75, 'word': 0.25}
    """
    if not text:
        return {}
    weights = {}
    for part in text.split(","):
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in KINDS or name in weights:
            raise ValueError(f"{text!r}: {name!r} is not one of {', '.join(KINDS)}, or comes twice "
                             "(write task:weight,task:weight)")
        try:
            weights[name] = float(weight)
        except ValueError:
            raise ValueError(f"{text!r}: the weight of {name} is {weight!r}, not a number (write task:weight)") from None
        if not weights[name] >= 0:
            raise ValueError(f"{text!r}: the weight of {name} must be >= 0")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{text!r}: the weights sum to 0")
    return {k: v / total for k, v in weights.items()}


def apportion(weights: dict[str, float], n: int) -> dict[str, int]:
    """n items split by weights, the largest-remainder way: each gets floor(w * n), then the leftover items go to
    the largest remainders (ties: the order of `weights`). The counts sum to n, every step the same.

    >>> apportion({"arithmetic": 0.5, "word": 0.5}, 5), apportion({"a": 0.7, "b": 0.2, "c": 0.1}, 4)
    ({'arithmetic': 3, 'word': 2}, {'a': 3, 'b': 1, 'c': 0})
    """
    counts = {k: math.floor(w * n) for k, w in weights.items()}
    by_remainder = sorted(weights, key=lambda k: -(weights[k] * n - counts[k]))  # sorted is stable
    for k in by_remainder[:n - sum(counts.values())]:
        counts[k] += 1
    return counts


class Mixture:
    """The training questions an RL stage draws from: all of them alike, or a mixture of tasks by weight (R1's
    stage 4, RL for all scenarios). `draw(rng, n)` gives n distinct questions: apportion(weights, n) of each
    task, in the order of the weights, each drawn at random from that task's problems."""

    def __init__(self, problems: list[Problem], weights: dict[str, float] | None = None):
        self.problems, self.weights = problems, weights or {}
        self.pools = {k: [p for p in problems if task_of(p) == k] for k in self.weights}
        for k, pool in self.pools.items():
            if self.weights[k] > 0 and not pool:
                raise ValueError(f"the task mixture asks for {k} problems, and the training data has none: give "
                                 f"--task mix (or the task itself), or leave {k} out of the mixture")

    def draw(self, rng: random.Random, n: int) -> list[Problem]:
        if not self.weights:  # every training problem alike (the draws of a run without a mixture)
            return rng.sample(self.problems, n)
        counts = apportion(self.weights, n)
        short = [k for k in self.weights if counts[k] > len(self.pools[k])]
        if short:
            raise ValueError(f"the task mixture asks for {counts[short[0]]} {short[0]} problems at once and the "
                             f"training data has {len(self.pools[short[0]])}: raise --n_train (or --word_frac)")
        return [p for k in self.weights for p in rng.sample(self.pools[k], counts[k])]


def split_gsm8k(train: list[Problem], test: list[Problem]) -> tuple[list[Problem], list[Problem]]:
    """Drop train problems whose normalised question also appears in test.

    >>> a, b = Problem("Q 1?", "r", "1"), Problem("Q 2?", "r", "2")
    >>> split_gsm8k([a, b], [Problem("q  1?", "r", "1")])[0] == [b]
    True
    """
    test_keys = {normalise_question(p.question) for p in test}
    return [p for p in train if normalise_question(p.question) not in test_keys], test


# -----------------------------------------------------------------------------
# Tokenizer

SPECIAL_TOKENS = ["<pad>", "<eos>", "<think>", "</think>", "<answer>", "</answer>"]
# The ids train_tokenizer gives <pad> and <eos>. The end token of a run is eos_id(tok), read from its tokenizer
# (EOS_ID for the tokenizers trained here). PAD_ID stays 0 for every tokenizer: it only fills the places a mask
# marks invalid (left-padded prompts, the rows after an EOS, SFT's padded targets), so it must be an id the
# embedding has (0 < vocab_size always holds) and is never read as a real token; for a pretrained tokenizer 0 is
# an ordinary token ('!' in Qwen2's and Llama 3's), which is fine for a filler nobody reads.
PAD_ID = 0
EOS_ID = 1
# The end tokens of pretrained tokenizers, in the order eos_id looks for them: the end of a chat turn first
# (ChatML's, Llama 3's), since a run with a chat template ends its completion where the assistant's turn ends and
# an instruct model stops there; then the end of a document (Qwen2's and GPT-2's, Llama 3's, SentencePiece's).
# Qwen2's tokenizer has both <|im_end|> and <|endoftext|>; Llama 3's both <|eot_id|> and <|end_of_text|>.
END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>")


def eos_id(tok: Tokenizer) -> int:
    """The id of the token that ends a completion: the project's <eos> if the vocabulary has it (EOS_ID for the
    tokenizers trained here), else the first of END_TOKENS the tokenizer has; a ValueError if it has none.

    >>> eos_id(train_tokenizer(["What is 12+3?"] * 10, vocab_size=300))
    1
    """
    for token in ("<eos>",) + END_TOKENS:
        i = tok.token_to_id(token)
        if i is not None:
            return i
    raise ValueError(f"the tokenizer has no end-of-sequence token: none of <eos>, {', '.join(END_TOKENS)} is in its "
                     f"vocabulary of {tok.get_vocab_size()}, so a completion could never stop")


def corpus_texts(problems: Iterable[Problem], template: str = "compact") -> Iterator[str]:
    """Prompt + completion for each problem: exactly what the model will read.

    >>> next(corpus_texts([Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")]))[:20]
    'User: What is 2+3?\\nA'
    """
    for p in problems:
        yield format_prompt(p.question, template) + format_completion(p, template=template)


TOKENIZER_PROBLEMS = 20_000  # a run's tokenizer learns its merges from its first 20k training problems


def run_tokenizer(train: list[Problem], template: str, vocab_size: int) -> Tokenizer:
    """A run's tokenizer: merges learnt from the first TOKENIZER_PROBLEMS training problems (the corpus is
    repetitive, more adds nothing), so two runs with the same data, template and vocab_size tokenize alike."""
    return train_tokenizer(corpus_texts(train[:TOKENIZER_PROBLEMS], template), vocab_size)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Tokenizer:
    """A byte-level BPE tokenizer in which every digit is its own token (design: One token per digit).

    Pre-tokenizing with Digits(individual_digits=True) cuts "2082" into
    "2","0","8","2" before BPE runs, and BPE never merges across those cuts.
    ByteLevel then maps every byte to a printable character (space -> "Ġ",
    newline -> "Ċ"), so a space before a number becomes its own "Ġ" token and
    any text decodes back exactly. The special tokens are matched before
    pre-tokenization, so "<think>" in the text is always one token.

    >>> tok = train_tokenizer(["What is 12+3?"] * 10, vocab_size=300)
    >>> decode(tok, encode(tok, "What is 12+3?"))
    'What is 12+3?'
    """
    tok = Tokenizer(models.BPE())  # no unk token: the byte alphabet covers all text
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,  # a merge seen once is noise
        special_tokens=SPECIAL_TOKENS,  # added first, in order: <pad>=0, <eos>=1
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.token_to_id("<pad>") != PAD_ID or tok.token_to_id("<eos>") != EOS_ID:
        raise RuntimeError("special tokens did not get the expected ids")
    return tok


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Text -> token ids, nothing added (the training code appends eos_id(tok); a pretrained tokenizer's own BOS is
    not added either: a chat template writes it)."""
    return tok.encode(text, add_special_tokens=False).ids


def decode(tok: Tokenizer, ids: list[int]) -> str:
    """Token ids -> text, keeping the tags: the rewards need <think>/<answer>."""
    return tok.decode(ids, skip_special_tokens=False)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table, the one `pre_tokenizers.ByteLevel` uses.

    A byte-level token is a string of these characters, one per byte. The 188
    printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the
    other 68 (space, newline, controls, ...) become chr(256), chr(257), ... in
    byte order, so that every token is printable: space -> 'Ġ', newline -> 'Ċ'.

    >>> table = bytes_to_unicode()
    >>> table[ord(" ")], table[ord("\\n")], table[ord("a")], table[0xE9]
    ('Ġ', 'Ċ', 'a', 'é')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    shifted = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(shifted)}


_BYTE_OF_CHAR = {c: b for b, c in bytes_to_unicode().items()}


@lru_cache(maxsize=1 << 16)  # token_spans asks for the same few hundred tokens again and again
def _token_bytes(tok: Tokenizer, token_id: int) -> bytes:
    """The bytes a token stands for, by the rule `decoders.ByteLevel` applies.

    A token made only of table characters maps through the table ('Ġ7' ->
    b' 7', 'Ã' -> b'\\xc3', '<think>' -> b'<think>'); any other token (an
    added token like '漢字') stands for its own UTF-8.
    """
    token = tok.id_to_token(token_id)
    if token is None:  # decode() would silently drop it
        raise ValueError(f"token_spans: id {token_id} is not in the vocabulary")
    if all(c in _BYTE_OF_CHAR for c in token):
        return bytes(_BYTE_OF_CHAR[c] for c in token)
    return token.encode("utf-8")


def token_spans(tok: Tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """The [start, end) character span of each token in `text = decode(tok, ids)`.

    Decoding token by token is not enough: a byte-level token can hold part
    of a character ("é" is the two byte tokens 'Ã' '©'), and each part alone
    decodes to U+FFFD. So we feed the tokens' bytes to an incremental UTF-8
    decoder, which emits each character as soon as its bytes are complete.
    With errors="replace" it replaces an invalid byte run by U+FFFD as the
    tokenizer's decoder does (both follow Unicode's "maximal subpart" rule).

    Rules:
    - a character belongs to the token that supplies its last byte, so a
      character split across tokens belongs to the token that completes it;
      a U+FFFD for an invalid run belongs to the token whose byte shows the
      run invalid (the next byte's token, or the last token at the end);
    - a token that completes no character gets an empty span (start == end)
      at the current position;
    - spans are contiguous and in order: "".join(text[s:e] for s, e in spans)
      == text. If that ever fails we raise ValueError: wrong spans would put
      rewards on the wrong tokens silently.

    >>> tok = train_tokenizer(["What is 12+3?"] * 10, vocab_size=300)
    >>> ids = encode(tok, "é=1")  # 'Ã' '©' '=' '1': é is two byte tokens
    >>> text = decode(tok, ids)
    >>> spans = token_spans(tok, ids)
    >>> spans, [text[s:e] for s, e in spans]
    ([(0, 0), (0, 1), (1, 2), (2, 3)], ['', 'é', '=', '1'])
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(_token_bytes(tok, i)) for i in ids]
    if pieces:  # an unfinished character at the very end becomes U+FFFD, on the last token
        pieces[-1] += decoder.decode(b"", final=True)
    if "".join(pieces) != decode(tok, ids):
        raise ValueError(f"token_spans: the spans' text differs from decode(tok, ids), ids={ids}")
    ends = list(accumulate(map(len, pieces)))
    return list(zip([0] + ends, ends))


def tokenize_problems(tok, problems, template: str) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, worked-solution ids + EOS) of every problem: what SFT trains on and what sizes the run.
    Encoded as `encode` does, nothing added."""
    prompts = tok.encode_batch([format_prompt(p.question, template) for p in problems], add_special_tokens=False)
    worked = tok.encode_batch([format_completion(p, template=template) for p in problems], add_special_tokens=False)
    eos = eos_id(tok)
    return [e.ids for e in prompts], [e.ids + [eos] for e in worked]
