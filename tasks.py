"""Tasks for tiny-grpo: the problems, the prompt format and the tokenizer.

Contract. This module holds everything a model needs to *see*; nothing here
knows about models or training:

- `Problem`: one question, its worked solution (GSM8K style) and its final
  integer answer as a string.
- Two synthetic generators, so that we can train from scratch on a CPU:
  `arithmetic_problem` (expressions like 347*6+125-89) and `word_problem`
  (GSM8K-style word problems from `WORD_TEMPLATES`).
- `load_gsm8k`, a strict loader for the real GSM8K JSONL files.
- The prompt templates (`R1_ZERO_TEMPLATE`, `COMPACT_TEMPLATE`),
  `format_prompt` and `format_completion` (the SFT target).
- `make_splits` / `split_gsm8k`: train/test splits with no question leaked.
- A byte-level BPE tokenizer from HuggingFace `tokenizers`
  (`train_tokenizer`, `encode`, `decode`), and `token_spans`: which
  characters of the decoded text each token supplies.

Deliberate choices:

1. Every worked step is written as GSM8K writes it, `48/2 = <<48/2=24>>24`,
   and every value is computed with Python ints (never `eval`), so a model
   that imitates our solutions learns the real GSM8K format, and every
   annotation is guaranteed to be correct.
2. Answers are normalised integer strings ("1000", "-5"): a reward function
   can compare strings, with no float or comma parsing.
3. Arithmetic numbers pick their digit count first, then their value, so
   1-digit numbers are as common as 3-digit ones; a uniform value would make
   90% of the numbers 3 digits long and small cases would be rare.
4. Synthetic problems never need negative numbers or fractions unless asked
   (`allow_negative`); word problems choose their numbers so that every
   division is exact.
5. Splits are leak-free: the test set is drawn first from its own seed and
   train skips any question whose normalised text is in test.
6. The tokenizer splits every digit into its own token
   (`Digits(individual_digits=True)`), as LLaMA does: "2082" is
   four tokens, so carrying and place value are learnable, and a number is
   never one opaque token. It is byte-level, so any text round-trips exactly.
7. The R1 template is copied verbatim from the paper; a compact template is
   provided because a tiny from-scratch model gains nothing from the
   60-word system text (see `COMPACT_TEMPLATE`).
8. Everything is reproducible: all randomness comes from a `random.Random`
   passed in (or seeded from the split seed), never from the global RNG.
"""

import codecs
import json
import operator
import os
import random
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate
from typing import Callable, Iterable, Iterator

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


def _annotate(expr: str, value: int) -> str:
    """One calculator step, exactly as GSM8K writes it.

    >>> _annotate("347*6", 2082)
    '347*6 = <<347*6=2082>>2082'
    """
    return f"{expr} = <<{expr}={value}>>{value}"


# -----------------------------------------------------------------------------
# Arithmetic generator


def _random_number(rng: random.Random, max_digits: int, minimum: int = 0) -> int:
    """A number with a uniform digit count in 1..max_digits, then a uniform value.

    Drawing the length first keeps small numbers common (choice 3). `minimum`
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
            steps.append(_annotate(f"{terms[-1]}*{x}", product))
            values.append(product)
            terms[-1] = product
        else:
            signs.append(op)
            terms.append(x)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):  # 2. the +/- chain, left to right
        new_total = total + term if sign == "+" else total - term
        steps.append(_annotate(f"{total}{sign}{term}", new_total))
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
# GSM8K-style word problems

NAMES = [
    "Tom", "Maria", "Aisha", "Kenji", "Olivia", "Liam", "Sofia", "Mateo", "Priya", "Noah",
    "Chloe", "Omar", "Elena", "Jamal", "Mei", "Lucas", "Fatima", "Ben", "Zoe", "Ravi",
]  # fmt: skip
FRUITS = ["apples", "oranges", "pears", "peaches", "lemons", "mangoes", "plums", "kiwis"]
TREATS = ["cookies", "candies", "stickers", "marbles", "crayons", "cards", "pencils", "balloons"]
GOODS = ["notebooks", "mugs", "toy cars", "batteries", "light bulbs", "T-shirts", "soap bars"]

# Word-problem steps are computed with these int operations, never with eval.
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


def _calc(*parts) -> tuple[str, int]:
    """Evaluate a flat chain like (3, "*", 4) with ints; return (step text, value).

    The chain is evaluated left to right, which matches the usual precedence
    only when it mixes no '+-' with '*/', so we forbid that mix. A division
    must be exact: every word-problem quantity is a whole number (choice 4).

    >>> _calc(3, "*", 4)
    ('3*4 = <<3*4=12>>12', 12)
    >>> _calc(40, "*", 25, "/", 100)[1]
    10
    """
    ops = set(parts[1::2])
    if ops & set("+-") and ops & set("*/"):
        raise ValueError(f"_calc cannot mix +- with */: {parts}")
    value = parts[0]
    for op, x in zip(parts[1::2], parts[2::2]):
        if op == "/" and value % x:
            raise ValueError(f"inexact division in {parts}")
        value = _OPERATORS[op](value, x)
    if value < 0:
        raise ValueError(f"negative intermediate in {parts}")
    return _annotate("".join(map(str, parts)), value), value


def _problem(question: str, lines: list[str], answer: int) -> Problem:
    """Assemble a word problem: one reasoning sentence per line."""
    return Problem(question, "\n".join(lines), str(answer))


def _shopping(rng: random.Random) -> Problem:
    """Two purchases, a total, and the change from a banknote (4 steps)."""
    name = rng.choice(NAMES)
    fruit1, fruit2 = rng.sample(FRUITS, 2)
    n1, p1, n2, p2 = rng.randint(2, 12), rng.randint(1, 9), rng.randint(2, 12), rng.randint(1, 9)
    s1, cost1 = _calc(n1, "*", p1)
    s2, cost2 = _calc(n2, "*", p2)
    s3, total = _calc(cost1, "+", cost2)
    bill = next(b for b in (20, 50, 100, 200, 500) if b >= total)
    s4, change = _calc(bill, "-", total)
    question = (
        f"{name} buys {n1} {fruit1} for ${p1} each and {n2} {fruit2} for ${p2} each. "
        f"{name} pays with a ${bill} bill. How much change does {name} get, in dollars?"
    )
    lines = [
        f"{name} spends {s1} dollars on {fruit1}.",
        f"{name} spends {s2} dollars on {fruit2}.",
        f"In total {name} spends {s3} dollars.",
        f"{name} gets {s4} dollars in change.",
    ]
    return _problem(question, lines, change)


def _speed(rng: random.Random) -> Problem:
    """Distance = speed * time, over two legs (3 steps)."""
    vehicle = rng.choice(["train", "bus", "truck", "car", "ferry"])
    v1, v2 = rng.randrange(20, 125, 5), rng.randrange(20, 125, 5)
    h1, h2 = rng.randint(2, 6), rng.randint(1, 5)
    s1, d1 = _calc(v1, "*", h1)
    s2, d2 = _calc(v2, "*", h2)
    s3, total = _calc(d1, "+", d2)
    question = (
        f"A {vehicle} travels at {v1} km per hour for {h1} hours, then at {v2} km per hour "
        f"for {h2} hours. How many kilometers does the {vehicle} travel in total?"
    )
    lines = [
        f"In the first part it travels {s1} km.",
        f"In the second part it travels {s2} km.",
        f"In total it travels {s3} km.",
    ]
    return _problem(question, lines, total)


def _sharing(rng: random.Random) -> Problem:
    """Count, keep some, share the rest equally (3 steps, exact division)."""
    name, treat = rng.choice(NAMES), rng.choice(TREATS)
    boxes, per_box, friends = rng.randint(2, 9), rng.randint(4, 12), rng.randint(2, 6)
    total = boxes * per_box
    # Keep a small amount that leaves a multiple of `friends`; total >= 8 > friends,
    # so the candidate list is never empty.
    keep = rng.choice([k for k in range(1, total // 2 + 1) if (total - k) % friends == 0])
    s1, _ = _calc(boxes, "*", per_box)
    s2, rest = _calc(total, "-", keep)
    s3, each = _calc(rest, "/", friends)
    question = (
        f"{name} has {boxes} boxes of {treat} with {per_box} {treat} in each box. {name} keeps "
        f"{keep} and shares the rest equally among {friends} friends. "
        f"How many {treat} does each friend get?"
    )
    lines = [
        f"{name} has {s1} {treat}.",
        f"After keeping some, {name} shares {s2} {treat}.",
        f"Each friend gets {s3} {treat}.",
    ]
    return _problem(question, lines, each)


def _ages(rng: random.Random) -> Problem:
    """Ages relative to each other, then their sum (3 steps)."""
    a, b, c = rng.sample(NAMES, 3)
    age_a, times = rng.randint(3, 15), rng.randint(2, 4)
    younger = rng.randint(1, age_a * times - 1)
    s1, age_b = _calc(age_a, "*", times)
    s2, age_c = _calc(age_b, "-", younger)
    s3, total = _calc(age_a, "+", age_b, "+", age_c)
    question = (
        f"{a} is {age_a} years old. {b} is {times} times as old as {a}. {c} is {younger} "
        f"years younger than {b}. What is the sum of their ages?"
    )
    lines = [
        f"{b} is {s1} years old.",
        f"{c} is {s2} years old.",
        f"The sum of their ages is {s3}.",
    ]
    return _problem(question, lines, total)


def _practice_hours(rng: random.Random) -> Problem:
    """Minutes per day -> minutes per week -> hours over several weeks (3 steps)."""
    name = rng.choice(NAMES)
    hobby = rng.choice(["the piano", "the guitar", "chess", "drawing", "swimming", "coding"])
    while True:  # redraw until the total is a whole number of hours
        minutes = rng.choice([15, 20, 30, 40, 45, 60, 90])
        days, weeks = rng.randint(2, 7), rng.randint(2, 8)
        if minutes * days * weeks % 60 == 0:
            break
    s1, per_week = _calc(minutes, "*", days)
    s2, total = _calc(per_week, "*", weeks)
    s3, hours = _calc(total, "/", 60)
    question = (
        f"{name} practices {hobby} for {minutes} minutes a day, {days} days a week. "
        f"How many hours does {name} practice in {weeks} weeks?"
    )
    lines = [
        f"Each week {name} practices {s1} minutes.",
        f"In {weeks} weeks that is {s2} minutes.",
        f"That is {s3} hours.",
    ]
    return _problem(question, lines, hours)


def _wages(rng: random.Random) -> Problem:
    """Hourly pay * hours * days, plus a bonus (3 steps)."""
    name = rng.choice(NAMES)
    job = rng.choice(["a cafe", "a bookshop", "a farm", "a bakery", "a library", "a garage"])
    rate, hours, days = rng.randint(8, 25), rng.randint(2, 8), rng.randint(2, 6)
    bonus = rng.randrange(10, 105, 5)
    s1, per_day = _calc(rate, "*", hours)
    s2, pay = _calc(per_day, "*", days)
    s3, total = _calc(pay, "+", bonus)
    question = (
        f"{name} works at {job} and earns ${rate} an hour. {name} works {hours} hours a day "
        f"for {days} days and also gets a bonus of ${bonus}. "
        f"How many dollars does {name} earn in total?"
    )
    lines = [
        f"{name} earns {s1} dollars a day.",
        f"In {days} days {name} earns {s2} dollars.",
        f"With the bonus {name} earns {s3} dollars.",
    ]
    return _problem(question, lines, total)


def _recipe(rng: random.Random) -> Problem:
    """Scale a recipe by a whole number of batches (4 steps)."""
    name = rng.choice(NAMES)
    dish = rng.choice(["muffins", "cookies", "pancakes", "biscuits", "scones"])
    serves, batches = rng.choice([4, 6, 8, 10, 12, 24]), rng.randint(2, 6)
    flour, sugar = rng.randint(1, 5), rng.randint(1, 3)
    wanted = serves * batches
    s1, _ = _calc(wanted, "/", serves)
    s2, flour_total = _calc(batches, "*", flour)
    s3, sugar_total = _calc(batches, "*", sugar)
    s4, total = _calc(flour_total, "+", sugar_total)
    question = (
        f"A recipe for {serves} {dish} needs {flour} cups of flour and {sugar} cups of sugar. "
        f"{name} wants to make {wanted} {dish}. How many cups of flour and sugar does {name} "
        f"need altogether?"
    )
    lines = [
        f"{name} needs to make the recipe {s1} times.",
        f"That takes {s2} cups of flour.",
        f"It also takes {s3} cups of sugar.",
        f"Altogether {name} needs {s4} cups.",
    ]
    return _problem(question, lines, total)


def _savings(rng: random.Random) -> Problem:
    """Start amount plus weekly savings, minus a purchase (3 steps)."""
    name = rng.choice(NAMES)
    thing = rng.choice(["bike", "game", "jacket", "skateboard", "tablet", "telescope"])
    start, weekly, weeks = rng.randint(5, 60), rng.randint(3, 20), rng.randint(3, 12)
    saved_total = start + weekly * weeks
    price = rng.randint(saved_total // 3, saved_total)
    s1, saved = _calc(weekly, "*", weeks)
    s2, _ = _calc(start, "+", saved)
    s3, left = _calc(saved_total, "-", price)
    question = (
        f"{name} has ${start} and saves ${weekly} every week. After {weeks} weeks, {name} buys "
        f"a {thing} that costs ${price}. How many dollars does {name} have left?"
    )
    lines = [
        f"{name} saves {s1} dollars.",
        f"{name} then has {s2} dollars.",
        f"After buying the {thing}, {name} has {s3} dollars left.",
    ]
    return _problem(question, lines, left)


def _percent(rng: random.Random) -> Problem:
    """A percent of a class, then a fraction of the rest (3 steps)."""
    club = rng.choice(["chess", "soccer", "drama", "robotics", "music", "art"])
    while True:  # redraw until the percent and the fraction are both exact
        students, k = rng.randint(20, 60), rng.randint(2, 4)
        pct = rng.choice([10, 20, 25, 40, 50, 60, 75, 80])
        girls = students * pct // 100
        if students * pct % 100 == 0 and (students - girls) % k == 0:
            break
    s1, _ = _calc(students, "*", pct, "/", 100)
    s2, boys = _calc(students, "-", girls)
    s3, in_club = _calc(boys, "/", k)
    question = (
        f"There are {students} students in a class. {pct}% of them are girls, and 1/{k} of the "
        f"boys are in the {club} club. How many boys are in the {club} club?"
    )
    lines = [
        f"There are {s1} girls.",
        f"There are {s2} boys.",
        f"The {club} club has {s3} boys.",
    ]
    return _problem(question, lines, in_club)


def _gifts(rng: random.Random) -> Problem:
    """Give away a fraction, then receive more (3 steps)."""
    name, friend = rng.sample(NAMES, 2)
    treat, k = rng.choice(TREATS), rng.randint(2, 5)
    have, more = k * rng.randint(3, 20), rng.randint(2, 30)
    s1, given = _calc(have, "/", k)
    s2, left = _calc(have, "-", given)
    s3, total = _calc(left, "+", more)
    question = (
        f"{name} has {have} {treat} and gives 1/{k} of them to {friend}. Then {name} buys "
        f"{more} more {treat}. How many {treat} does {name} have now?"
    )
    lines = [
        f"{name} gives away {s1} {treat}.",
        f"{name} has {s2} {treat} left.",
        f"Now {name} has {s3} {treat}.",
    ]
    return _problem(question, lines, total)


def _fence(rng: random.Random) -> Problem:
    """Perimeter of a rectangle, then the cost of fencing it (3 steps)."""
    place = rng.choice(["garden", "yard", "field", "playground", "pen"])
    length, width, price = rng.randint(5, 40), rng.randint(3, 30), rng.randint(2, 12)
    s1, half = _calc(length, "+", width)
    s2, perimeter = _calc(2, "*", half)
    s3, cost = _calc(perimeter, "*", price)
    question = (
        f"A rectangular {place} is {length} meters long and {width} meters wide. Fencing costs "
        f"${price} per meter. How many dollars does it cost to fence the whole {place}?"
    )
    lines = [
        f"One length and one width add up to {s1} meters.",
        f"The perimeter is {s2} meters.",
        f"The fence costs {s3} dollars.",
    ]
    return _problem(question, lines, cost)


def _tiles(rng: random.Random) -> Problem:
    """Area of a floor, boxes of tiles, cost (3 steps, exact division)."""
    room = rng.choice(["kitchen", "bathroom", "hallway", "classroom", "patio"])
    per_box, length = rng.randint(2, 6), rng.randint(3, 15)
    width, price = per_box * rng.randint(1, 4), rng.randint(10, 40)  # area divisible by per_box
    s1, area = _calc(length, "*", width)
    s2, boxes = _calc(area, "/", per_box)
    s3, cost = _calc(boxes, "*", price)
    question = (
        f"A {room} floor is {length} meters long and {width} meters wide. One box of tiles "
        f"covers {per_box} square meters and costs ${price}. How many dollars do the tiles cost?"
    )
    lines = [
        f"The floor is {s1} square meters.",
        f"It needs {s2} boxes of tiles.",
        f"The tiles cost {s3} dollars.",
    ]
    return _problem(question, lines, cost)


def _inventory(rng: random.Random) -> Problem:
    """Stock minus two days of sales plus a delivery (4 steps)."""
    goods = rng.choice(GOODS)
    mon, tue = rng.randint(5, 60), rng.randint(5, 60)
    stock = mon + tue + rng.randint(0, 150)
    boxes, per_box = rng.randint(2, 9), rng.choice([6, 10, 12, 20, 24])
    s1, sold = _calc(mon, "+", tue)
    s2, left = _calc(stock, "-", sold)
    s3, delivered = _calc(boxes, "*", per_box)
    s4, total = _calc(left, "+", delivered)
    question = (
        f"A store has {stock} {goods}. It sells {mon} on Monday and {tue} on Tuesday. On "
        f"Wednesday it receives {boxes} boxes with {per_box} {goods} in each. "
        f"How many {goods} does the store have now?"
    )
    lines = [
        f"The store sells {s1} {goods}.",
        f"It has {s2} {goods} left.",
        f"The delivery brings {s3} {goods}.",
        f"Now the store has {s4} {goods}.",
    ]
    return _problem(question, lines, total)


def _basketball(rng: random.Random) -> Problem:
    """Points from two- and three-point shots and free throws (3 steps)."""
    name = rng.choice(NAMES)
    twos, threes, free = rng.randint(1, 12), rng.randint(1, 8), rng.randint(1, 10)
    s1, from_twos = _calc(twos, "*", 2)
    s2, from_threes = _calc(threes, "*", 3)
    s3, total = _calc(from_twos, "+", from_threes, "+", free)
    question = (
        f"In a basketball game, {name} makes {twos} two-point shots, {threes} three-point shots "
        f"and {free} free throws worth 1 point each. How many points does {name} score?"
    )
    lines = [
        f"The two-point shots give {s1} points.",
        f"The three-point shots give {s2} points.",
        f"{name} scores {s3} points.",
    ]
    return _problem(question, lines, total)


def _road_trip(rng: random.Random) -> Problem:
    """Round-trip distance, fuel used, fuel cost (3 steps, exact division)."""
    name, city = rng.choice(NAMES), rng.choice(["Springfield", "Riverton", "Lakeside", "Hillview"])
    km_per_liter, price = rng.choice([5, 8, 10, 12, 15, 20]), rng.randint(1, 3)
    distance = km_per_liter * rng.randint(3, 30)  # round trip divisible by km_per_liter
    s1, round_trip = _calc(distance, "*", 2)
    s2, liters = _calc(round_trip, "/", km_per_liter)
    s3, cost = _calc(liters, "*", price)
    question = (
        f"{name} drives to {city}, which is {distance} km away, and back. The car uses 1 liter "
        f"of fuel every {km_per_liter} km, and fuel costs ${price} per liter. "
        f"How many dollars does the fuel for the trip cost?"
    )
    lines = [
        f"The round trip is {s1} km.",
        f"The car uses {s2} liters of fuel.",
        f"The fuel costs {s3} dollars.",
    ]
    return _problem(question, lines, cost)


def _reading(rng: random.Random) -> Problem:
    """Pages read over days, then half the remainder (3 steps)."""
    name = rng.choice(NAMES)
    per_day, days = rng.randint(5, 30), rng.randint(2, 7)
    pages = per_day * days + 2 * rng.randint(5, 80)  # the remainder is even
    s1, read = _calc(per_day, "*", days)
    s2, left = _calc(pages, "-", read)
    s3, last_day = _calc(left, "/", 2)
    question = (
        f"A book has {pages} pages. {name} reads {per_day} pages a day for {days} days, and the "
        f"next day reads half of the remaining pages. How many pages does {name} read that day?"
    )
    lines = [
        f"{name} reads {s1} pages in {days} days.",
        f"There are {s2} pages left.",
        f"The next day {name} reads {s3} pages.",
    ]
    return _problem(question, lines, last_day)


def _party(rng: random.Random) -> Problem:
    """Tables needed for the guests, flowers per table (2 steps)."""
    name = rng.choice(NAMES)
    seats, flowers = rng.choice([4, 6, 8, 10]), rng.randint(2, 9)
    guests = seats * rng.randint(3, 15)
    s1, tables = _calc(guests, "/", seats)
    s2, total = _calc(tables, "*", flowers)
    question = (
        f"{name} is planning a party for {guests} guests. Each table seats {seats} guests and "
        f"gets {flowers} flowers. How many flowers does {name} need?"
    )
    lines = [f"{name} needs {s1} tables.", f"{name} needs {s2} flowers."]
    return _problem(question, lines, total)


WORD_TEMPLATES: list[Callable[[random.Random], Problem]] = [
    _shopping, _speed, _sharing, _ages, _practice_hours, _wages, _recipe, _savings,
    _percent, _gifts, _fence, _tiles, _inventory, _basketball, _road_trip, _reading, _party,
]  # fmt: skip


def template_names() -> list[str]:
    """Names of the word templates, for logs and tests.

    >>> template_names()[:2]
    ['shopping', 'speed']
    """
    return [t.__name__.lstrip("_") for t in WORD_TEMPLATES]


def word_problem(rng: random.Random) -> Problem:
    """A GSM8K-style word problem from a uniformly chosen template.

    >>> p = word_problem(random.Random(0))
    >>> p.question.endswith("?") and "<<" in p.reasoning
    True
    """
    template = rng.choice(WORD_TEMPLATES)  # looked up at call time, so tests can wrap it
    return template(rng)


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
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)

# Departure from the paper: a model trained from scratch gains nothing from the
# 60-word system text (it carries no information it could understand), and the
# text would triple the sequence length on a CPU. The completion format, the
# <think>/<answer> tags, is unchanged, so the rewards are the same.
COMPACT_TEMPLATE = "User: {prompt}\nAssistant:"

TEMPLATES = {"r1": R1_ZERO_TEMPLATE, "compact": COMPACT_TEMPLATE}


def format_prompt(question: str, template: str = "compact") -> str:
    """The prompt the model continues.

    >>> format_prompt("What is 2+3?")
    'User: What is 2+3?\\nAssistant:'
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; allowed: {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(prompt=question)


def format_completion(p: Problem, show_work: bool = True) -> str:
    """The SFT target in the R1 format; reasoning lines keep their newlines.

    The leading space separates it from "Assistant:". No <eos> here: the
    training code appends EOS_ID to the token ids. With show_work=False the
    <think> block is empty: the answer with no worked steps, the kind of
    target a mixed-quality cold start holds (train.py --sft_direct_frac).

    >>> format_completion(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"))
    ' <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>'
    >>> format_completion(Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"), show_work=False)
    ' <think> </think> <answer> 5 </answer>'
    """
    if not show_work:
        return f" <think> </think> <answer> {p.answer} </answer>"
    return f" <think> {p.reasoning} </think> <answer> {p.answer} </answer>"


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


TASKS = ("arithmetic", "word")


def make_splits(
    task: str, n_train: int, n_test: int, seed: int, **knobs
) -> tuple[list[Problem], list[Problem]]:
    """Leak-free synthetic train/test splits (choice 5).

    Test is drawn first from its own seed, so it does not change with n_train.
    knobs go to arithmetic_problem (digits=, ops=, ...).

    >>> train, test = make_splits("arithmetic", 20, 10, seed=0)
    >>> len(train), len(test)
    (20, 10)
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {list(TASKS)}")
    if task == "word" and knobs:
        raise ValueError(f"the word task takes no knobs, got {sorted(knobs)}")
    generate = arithmetic_problem if task == "arithmetic" else word_problem
    draw_test = partial(generate, random.Random(f"{seed}-test"), **knobs)
    draw_train = partial(generate, random.Random(f"{seed}-train"), **knobs)
    seen: set[str] = set()
    test = _unique_problems(draw_test, n_test, seen, f"{task} test")
    train = _unique_problems(draw_train, n_train, seen, f"{task} train")
    return train, test


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
PAD_ID = 0
EOS_ID = 1


def corpus_texts(problems: Iterable[Problem], template: str = "compact") -> Iterator[str]:
    """Prompt + completion for each problem: exactly what the model will read.

    >>> next(corpus_texts([Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")]))[:20]
    'User: What is 2+3?\\nA'
    """
    for p in problems:
        yield format_prompt(p.question, template) + format_completion(p)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Tokenizer:
    """A byte-level BPE tokenizer in which every digit is its own token (choice 6).

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
    """Text -> token ids, nothing added (the training code appends EOS_ID)."""
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
