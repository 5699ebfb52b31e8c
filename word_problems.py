"""GSM8K-style word problems, generated: 17 templates, each a short story with 2-5 calculator steps.

Each template draws its names and numbers from the `random.Random` it is given and writes its worked solution
the way GSM8K writes it, one sentence per step with a `<<expr=value>>` annotation. Every value is computed with
Python ints (`calc`, never `eval`), and numbers are chosen so that every division is exact, so every
annotation is right and every answer a whole number (design: Worked steps in GSM8K's format).

    >>> p = word_problem(random.Random(0))
    >>> p.question.endswith("?") and "<<" in p.reasoning
    True
"""

import operator
import random
from typing import Callable

from tasks import Problem, annotate

NAMES = [
    "Tom", "Maria", "Aisha", "Kenji", "Olivia", "Liam", "Sofia", "Mateo", "Priya", "Noah",
    "Chloe", "Omar", "Elena", "Jamal", "Mei", "Lucas", "Fatima", "Ben", "Zoe", "Ravi",
]  # fmt: skip
FRUITS = ["apples", "oranges", "pears", "peaches", "lemons", "mangoes", "plums", "kiwis"]
TREATS = ["cookies", "candies", "stickers", "marbles", "crayons", "cards", "pencils", "balloons"]
GOODS = ["notebooks", "mugs", "toy cars", "batteries", "light bulbs", "T-shirts", "soap bars"]

# Word-problem steps are computed with these int operations, never with eval.
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


def calc(*parts) -> tuple[str, int]:
    """Evaluate a flat chain like (3, "*", 4) with ints; return (step text, value).

    The chain is evaluated left to right, which matches the usual precedence
    only when it mixes no '+-' with '*/', so we forbid that mix. A division
    must be exact: every word-problem quantity is a whole number (design: Whole non-negative quantities).

    >>> calc(3, "*", 4)
    ('3*4 = <<3*4=12>>12', 12)
    >>> calc(40, "*", 25, "/", 100)[1]
    10
    """
    ops = set(parts[1::2])
    if ops & set("+-") and ops & set("*/"):
        raise ValueError(f"calc cannot mix +- with */: {parts}")
    value = parts[0]
    for op, x in zip(parts[1::2], parts[2::2]):
        if op == "/" and value % x:
            raise ValueError(f"inexact division in {parts}")
        value = _OPERATORS[op](value, x)
    if value < 0:
        raise ValueError(f"negative intermediate in {parts}")
    return annotate("".join(map(str, parts)), value), value


def _problem(question: str, lines: list[str], answer: int) -> Problem:
    """Assemble a word problem: one reasoning sentence per line."""
    return Problem(question, "\n".join(lines), str(answer))


def _shopping(rng: random.Random) -> Problem:
    """Two purchases, a total, and the change from a banknote (4 steps)."""
    name = rng.choice(NAMES)
    fruit1, fruit2 = rng.sample(FRUITS, 2)
    n1, p1, n2, p2 = rng.randint(2, 12), rng.randint(1, 9), rng.randint(2, 12), rng.randint(1, 9)
    s1, cost1 = calc(n1, "*", p1)
    s2, cost2 = calc(n2, "*", p2)
    s3, total = calc(cost1, "+", cost2)
    bill = next(b for b in (20, 50, 100, 200, 500) if b >= total)
    s4, change = calc(bill, "-", total)
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
    s1, d1 = calc(v1, "*", h1)
    s2, d2 = calc(v2, "*", h2)
    s3, total = calc(d1, "+", d2)
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
    s1, _ = calc(boxes, "*", per_box)
    s2, rest = calc(total, "-", keep)
    s3, each = calc(rest, "/", friends)
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
    s1, age_b = calc(age_a, "*", times)
    s2, age_c = calc(age_b, "-", younger)
    s3, total = calc(age_a, "+", age_b, "+", age_c)
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
    s1, per_week = calc(minutes, "*", days)
    s2, total = calc(per_week, "*", weeks)
    s3, hours = calc(total, "/", 60)
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
    s1, per_day = calc(rate, "*", hours)
    s2, pay = calc(per_day, "*", days)
    s3, total = calc(pay, "+", bonus)
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
    s1, _ = calc(wanted, "/", serves)
    s2, flour_total = calc(batches, "*", flour)
    s3, sugar_total = calc(batches, "*", sugar)
    s4, total = calc(flour_total, "+", sugar_total)
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
    s1, saved = calc(weekly, "*", weeks)
    s2, _ = calc(start, "+", saved)
    s3, left = calc(saved_total, "-", price)
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
    s1, _ = calc(students, "*", pct, "/", 100)
    s2, boys = calc(students, "-", girls)
    s3, in_club = calc(boys, "/", k)
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
    s1, given = calc(have, "/", k)
    s2, left = calc(have, "-", given)
    s3, total = calc(left, "+", more)
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
    s1, half = calc(length, "+", width)
    s2, perimeter = calc(2, "*", half)
    s3, cost = calc(perimeter, "*", price)
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
    s1, area = calc(length, "*", width)
    s2, boxes = calc(area, "/", per_box)
    s3, cost = calc(boxes, "*", price)
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
    s1, sold = calc(mon, "+", tue)
    s2, left = calc(stock, "-", sold)
    s3, delivered = calc(boxes, "*", per_box)
    s4, total = calc(left, "+", delivered)
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
    s1, from_twos = calc(twos, "*", 2)
    s2, from_threes = calc(threes, "*", 3)
    s3, total = calc(from_twos, "+", from_threes, "+", free)
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
    s1, round_trip = calc(distance, "*", 2)
    s2, liters = calc(round_trip, "/", km_per_liter)
    s3, cost = calc(liters, "*", price)
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
    s1, read = calc(per_day, "*", days)
    s2, left = calc(pages, "-", read)
    s3, last_day = calc(left, "/", 2)
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
    s1, tables = calc(guests, "/", seats)
    s2, total = calc(tables, "*", flowers)
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
