"""Rule-based rewards for tiny-grpo: answer checking, format, length, language and per-step checks.

What this file implements (each a pure function of the completion text, and the gold answer where needed):

    accuracy_reward              DeepSeek-R1 rule reward, 1 or 0 (arXiv 2501.12948, Eq. 4, App. B.3.1);
                                 DAPO's +1/-1 variant with wrong=-1.0 (arXiv 2503.14476, Eq. 7)
    format_reward                DeepSeek-R1 format reward for the Table 1 template
                                 "<think> ... </think> <answer> ... </answer>"
    language_consistency_reward  DeepSeek-R1 Eq. 7: Num(Words_target) / Num(Words) over the chain of thought
    soft_overlong_penalty        DAPO Eq. 13, R_length
    weighted_sum, total_reward   the one place rewards are combined: R1 Eq. 4 (acc + format),
                                 R1 Eqs. 8-10 (+ language), DAPO (+ R_length); RewardWeights, reward_components
    step_rewards                 a rule-based stand-in for the process reward model of DeepSeekMath
                                 §4.1.3 (arXiv 2402.03300): every GSM8K calculator annotation <<expr=value>>
                                 (Cobbe et al., arXiv 2110.14168) is re-computed and scored 1 or 0
    char_to_token_index          maps a step's end character to its token, i.e. index(j) in §4.1.3

and the parsers they share: extract_answer, parse_number, answers_match, safe_eval (no eval() anywhere).

The papers publish neither the regexes nor the parsers; ours (exactly one answer, exact rational numbers,
a strict format, the simplified language check, hostile input) are argued in docs/design.md ("Rewards"),
and the equations are written out in docs/equations.md.
Run the tests: python -m pytest -q tests/test_rewards.py
See the rewards of an example completion: python rewards.py
"""

import re
from dataclasses import dataclass
from fractions import Fraction
from collections.abc import Callable, Sequence

# ----------------------------------------------------------------------------- constants

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TEMPLATE_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
BOXED = "\\boxed"  # LaTeX \boxed{...}
HASHES = "####"  # GSM8K: "#### 72" closes every reference solution
STEP_OPEN, STEP_CLOSE = "<<", ">>"  # GSM8K calculator annotation <<48/2=24>>

DIGITS = "0123456789"
MAX_ANSWER_CHARS = 200  # longer answer contents are refused before they are scanned
MAX_NUMBER_CHARS = 100  # parse_number refuses longer strings, so at most 100 digits
MAX_EXPR_CHARS = 200  # safe_eval: longest expression
MAX_EXPR_DEPTH = 20  # safe_eval: deepest nesting of parentheses and unary signs
MAX_EXPR_DIGITS = 30  # safe_eval: longest number literal
MAX_EXPR_MAGNITUDE = 10**30  # safe_eval: refuse any intermediate value larger than this
MAX_STEPS = 100  # step_rewards: later annotations are ignored
MAX_COT_CHARS = 10_000  # language_consistency_reward scores this long a prefix of the chain of thought

# A run of characters that can make up a written number. One quantifier and no alternation: linear time.
_NUMBER_RUN = re.compile(r"[0-9.,/]+")
# A word: a maximal run of Unicode letters (word characters minus digits and underscore).
_LETTER_RUN = re.compile(r"[^\W\d_]+")


# ----------------------------------------------------------------------------- numbers


def _is_ascii_digits(s: str) -> bool:
    # str.isdigit alone would accept "٣", "５" and "²"
    return s.isascii() and s.isdigit()


def _without_thousands(whole: str) -> str | None:
    """'1,000,000' -> '1000000'. Groups after the first must have exactly 3 digits: '1,00' -> None."""
    groups = whole.split(",")
    if not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:]):
        return None
    return "".join(groups)


def _unsigned_decimal(s: str) -> Fraction | None:
    """'1,000.5' -> 2001/2, '12' -> 12, '.5' -> 1/2; None for anything else (signs, '1e5', '', '.')."""
    whole, dot, frac = s.partition(".")
    if "," in whole:
        whole = _without_thousands(whole)
        if whole is None:
            return None
    if dot and not _is_ascii_digits(frac):  # "1.", "1.2.3", "1.5e3"
        return None
    if whole and not _is_ascii_digits(whole):
        return None
    if not whole + frac:  # "" or "."
        return None
    return Fraction(int(whole + frac or "0"), 10 ** len(frac))


def parse_number(s: str) -> Fraction | None:
    """A written number as an exact Fraction, or None (design: Exact rational numbers).

    Accepted: ASCII digits, thousands separators in groups of three, a decimal point, one leading "+" or "-",
    then an optional "$", one "a/b" fraction, surrounding whitespace and one trailing period. Refused: other
    Unicode digits, exponents, nan, inf, "%", the Unicode minus and anything over 100 characters.

    "1,000" -> Fraction(1000);  " +12.0. " -> Fraction(12);  "-$3/4" -> Fraction(-3, 4);
    "1e5", "nan", "٧٢", "1,00" -> None.
    """
    if not isinstance(s, str):
        return None
    s = s.strip()
    if len(s) > MAX_NUMBER_CHARS:  # bounds the digits before int() ever sees them
        return None
    if s.endswith("."):  # "The answer is 72."
        s = s[:-1]
    sign = -1 if s.startswith("-") else 1
    if s[:1] in ("+", "-"):
        s = s[1:]
    if s.startswith("$"):
        s = s[1:]
    numerator, slash, denominator = s.partition("/")
    value = _unsigned_decimal(numerator)
    if slash:  # "3/4"; "1/0" and "1/2/3" are refused
        divisor = _unsigned_decimal(denominator)
        value = None if value is None or not divisor else value / divisor
    return None if value is None else sign * value


def _within(pred: Fraction, gold: Fraction, tol: float) -> bool:
    """|pred - gold| <= tol * |gold|; tol = 0 is exact equality."""
    return abs(pred - gold) <= Fraction(tol) * abs(gold)


def answers_match(pred: str | None, gold: str, tol: float = 0.0) -> bool:
    """True when both strings parse and are equal, or within a relative tolerance tol of gold.

    answers_match("1,000", "1000") -> True;  answers_match("3/4", "0.75") -> True;
    answers_match("0.33", "1/3") -> False, but True with tol=0.02.  A gold of 0 only matches exactly.
    """
    if not 0 <= tol < float("inf"):  # also refuses nan
        raise ValueError(f"tol must be finite and >= 0, got tol={tol}")
    p, g = parse_number(pred), parse_number(gold)
    return p is not None and g is not None and _within(p, g, tol)


# ----------------------------------------------------------------------------- answer extraction


def _single_number(content: str | None) -> str | None:
    """The one number written in an answer's content, else None. 'x = -5.' -> '-5';  '5 or 6' -> None."""
    if content is None or len(content) > MAX_ANSWER_CHARS:
        return None
    # only ASCII digits count (design: Exact rational numbers)
    if any(ch.isnumeric() and not ch.isascii() for ch in content):
        return None
    runs = [m for m in _NUMBER_RUN.finditer(content) if any(c in DIGITS for c in m.group())]
    if len(runs) != 1:  # no number, or several: "5, 6", "2 + 3", "1e5" (1 and 5)
        return None
    start, end = runs[0].span()
    if start > 0 and content[start - 1] == "$":
        start -= 1
    if start > 0 and content[start - 1] in "+-":
        start -= 1
    before = content[:start].rstrip()
    if before and (before[-1] in "+-" or not before[-1].isascii()):
        return None  # a sign we cannot read ("- 5", Unicode minus "−5", "€5") is refused, never dropped
    return content[start:end].rstrip(".,")  # drop sentence punctuation: "72." -> "72"


def _boxed_content(text: str, brace: int) -> str | None:
    """Text inside the braces opening at text[brace], matching nested braces; None if unclosed or too long."""
    if text[brace : brace + 1] != "{":
        return None
    depth = 0
    for i in range(brace, min(len(text), brace + MAX_ANSWER_CHARS + 2)):  # capped scan
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        if depth == 0:
            return text[brace + 1 : i]
    return None


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start : len(text) if end < 0 else end]


def extract_answer(text: str) -> str | None:
    """The single final answer of a completion, as written, or None (design: Exactly one answer).

    The completion must hold exactly one marker of any kind (<answer>...</answer>, "####" to the end of its
    line, or \\boxed{...}), and the marker exactly one number.

    " <think> 2+2 = <<2+2=4>>4 </think> <answer> 4 </answer>" -> "4"
    "Tom has 3+4 = <<3+4=7>>7 apples.\\n#### 7" -> "7";   "so \\boxed{-3/4}" -> "-3/4"
    "<answer> 4 </answer> <answer> 5 </answer>" -> None;   "<answer> 4 or 5 </answer>" -> None
    """
    if not isinstance(text, str):
        return None
    # BEGIN SOLUTION rewards: exactly one answer marker holding one number (_single_number), else None
    n_open, n_close = text.count(ANSWER_OPEN), text.count(ANSWER_CLOSE)
    n_boxed, n_hashes = text.count(BOXED), text.count(HASHES)
    if n_open + n_boxed + n_hashes != 1:  # no answer, or more than one: refuse, never guess
        return None
    if n_open:
        start = text.find(ANSWER_OPEN) + len(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        if n_close != 1 or end < 0:  # unclosed, closed twice, or closed before it opens
            return None
        return _single_number(text[start:end])
    if n_close:  # a stray "</answer>" is a malformed answer block
        return None
    if n_boxed:
        return _single_number(_boxed_content(text, text.find(BOXED) + len(BOXED)))
    return _single_number(_rest_of_line(text, text.find(HASHES) + len(HASHES)))
    # END SOLUTION rewards


# ----------------------------------------------------------------------------- outcome rewards


def accuracy_reward(completion: str, gold: str, correct: float = 1.0, wrong: float = 0.0, tol: float = 0.0) -> float:
    """`correct` if the single extracted answer equals gold, else `wrong`.

    R1 (Eq. 4, App. B.3.1): correct=1, wrong=0.  DAPO Eq. 7: R = +1 if is_equivalent(y_hat, y) else -1.
    ("... <answer> 1,000 </answer>", "1000") -> 1.0;  ("... <answer> 999 </answer>", "1000") -> 0.0;
    ("... <answer> 999 </answer>", "1000", wrong=-1.0) -> -1.0;  ("no answer at all", "1000") -> 0.0
    """
    if parse_number(gold) is None:
        raise ValueError(f"gold answer {gold!r} is not a number parse_number accepts")
    return correct if answers_match(extract_answer(completion), gold, tol) else wrong


def format_reward(completion: str) -> float:
    """1.0 iff completion = ws <think> reasoning </think> ws <answer> answer </answer> ws, else 0.0.

    R1 format reward for the Table 1 template; its exact rule is not published (design: Strict format reward).
    ws is optional whitespace, and each of the four tags appears exactly once, so neither part can contain a tag.
    " <think> 2+2=4 </think> <answer> 4 </answer>" -> 1.0;   "<think> 2+2=4 </think> 4" -> 0.0
    "<think> a </think> <answer> 4 </answer> <answer> 5 </answer>" -> 0.0
    """
    # BEGIN SOLUTION rewards: 1.0 iff <think>..</think> <answer>..</answer>, tags once, spaces around
    if not isinstance(completion, str) or any(completion.count(tag) != 1 for tag in TEMPLATE_TAGS):
        return 0.0
    think, think_end, answer, answer_end = (completion.find(tag) for tag in TEMPLATE_TAGS)
    if not think < think_end < answer < answer_end:
        return 0.0
    outside = (
        completion[:think],
        completion[think_end + len(THINK_CLOSE) : answer],
        completion[answer_end + len(ANSWER_CLOSE) :],
    )
    return 1.0 if all(part.strip() == "" for part in outside) else 0.0
    # END SOLUTION rewards


def is_ascii_word(word: str) -> bool:
    """The target language: a word whose letters are all ASCII (design: ASCII-word language check).

    'apples' -> True, 'яблоко' -> False.
    """
    return word.isascii()


def _chain_of_thought(completion: str) -> str:
    """Inside the single <think> block if there is one, else the whole completion; template tags removed."""
    if completion.count(THINK_OPEN) == 1 and completion.count(THINK_CLOSE) == 1:
        start, end = completion.find(THINK_OPEN) + len(THINK_OPEN), completion.find(THINK_CLOSE)
        if start <= end:
            completion = completion[start:end]
    for tag in TEMPLATE_TAGS:  # "think" and "answer" in a tag are not words of the reasoning
        completion = completion.replace(tag, " ")
    return completion


def language_consistency_reward(completion: str, is_target_word: Callable[[str], bool] = is_ascii_word) -> float:
    """Fraction of the chain of thought's words (in its first 10,000 characters) in the target language; 0.0 if none.

    R1 Eq. 7: Reward_language = Num(Words_target) / Num(Words), simplified (design: ASCII-word language check).
    "<think> Tom buys 3 apples </think> ..." -> 1.0;   "<think> Tom покупает apples </think>" -> 2/3
    "<think> 3*4 = <<3*4=12>>12 </think>" -> 0.0 (no words)
    """
    if not isinstance(completion, str):
        return 0.0
    words = _LETTER_RUN.findall(_chain_of_thought(completion)[:MAX_COT_CHARS])
    if not words:
        return 0.0
    return sum(1 for word in words if is_target_word(word)) / len(words)


def soft_overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    """DAPO Eq. 13, R_length(y), with L_max = max_len and L_cache = cache_len (all in tokens).

        0                                      if |y| <= L_max - L_cache
        ((L_max - L_cache) - |y|) / L_cache    if L_max - L_cache < |y| <= L_max
        -1                                     if |y| > L_max
    (90, 100, 20) -> -0.5;  (80, 100, 20) -> 0.0;  (101, 100, 20) -> -1.0
    """
    for name, value in (("length", length), ("max_len", max_len), ("cache_len", cache_len)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {name}={value}")
    if cache_len > max_len:
        raise ValueError(f"cache_len must be <= max_len, got cache_len={cache_len}, max_len={max_len}")
    soft_start = max_len - cache_len  # L_max - L_cache: the penalty ramps from 0 here to -1 at L_max
    if length <= soft_start:
        return 0.0
    if length <= max_len:  # only reachable when cache_len > 0, so no division by zero
        return (soft_start - length) / cache_len
    return -1.0


# ----------------------------------------------------------------------------- combining the rewards


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms. Defaults = R1 Eq. 4: accuracy + format, equal weights.

    DAPO: RewardWeights(format=0.0, overlong=1.0, accuracy_wrong=-1.0). R1 stage 2 (Eqs. 8-10): language=1.0.
    """

    accuracy: float = 1.0  # Reward_acc (R1 Eq. 4)
    format: float = 1.0  # Reward_format (R1 Eq. 4)
    overlong: float = 0.0  # R_length (DAPO Eq. 13); needs length, max_len and cache_len
    language: float = 0.0  # Reward_language (R1 Eq. 7), summed in R1's second RL stage
    accuracy_wrong: float = 0.0  # value of a wrong answer: 0 (R1) or -1 (DAPO Eq. 7); a value, not a weight


def reward_components(
    completion: str,
    gold: str,
    weights: RewardWeights = RewardWeights(),
    length: int | None = None,
    max_len: int | None = None,
    cache_len: int | None = None,
) -> dict[str, float]:
    """Every reward term, unweighted, for logging. "overlong" is 0.0 unless a length is given.

    Of the weights only accuracy_wrong is read here; weighted_sum applies the rest.
    ("<think> so 2+2=4 </think> <answer> 4 </answer>", "4")
        -> {"accuracy": 1.0, "format": 1.0, "overlong": 0.0, "language": 1.0}
    """
    overlong = 0.0
    if length is not None:
        if max_len is None or cache_len is None:
            raise ValueError("a length needs max_len and cache_len as well")
        overlong = soft_overlong_penalty(length, max_len, cache_len)
    return {
        "accuracy": accuracy_reward(completion, gold, wrong=weights.accuracy_wrong),
        "format": format_reward(completion),
        "overlong": overlong,
        "language": language_consistency_reward(completion),
    }


def weighted_sum(components: dict[str, float], weights: RewardWeights) -> float:
    """The one place the terms are combined: R1 Eq. 4 (acc + format), Eqs. 8-10 (+ language), DAPO (+ R_length)."""
    return (
        weights.accuracy * components["accuracy"]
        + weights.format * components["format"]
        + weights.overlong * components["overlong"]
        + weights.language * components["language"]
    )


def total_reward(
    completion: str,
    gold: str,
    weights: RewardWeights = RewardWeights(),
    length: int | None = None,
    max_len: int | None = None,
    cache_len: int | None = None,
) -> float:
    """The scalar reward r_i of one completion: weighted_sum of reward_components.

    With the default weights (R1 Eq. 4): a correct, well-formatted completion -> 2.0; right answer in the
    wrong format -> 1.0; wrong answer in the right format -> 1.0.
    """
    if weights.overlong and length is None:
        raise ValueError("weights.overlong is set, so total_reward needs the completion's length in tokens")
    return weighted_sum(reward_components(completion, gold, weights, length, max_len, cache_len), weights)


# ----------------------------------------------------------------------------- safe arithmetic


class _Refused(Exception):
    """Raised anywhere inside the evaluator; safe_eval turns it into None."""


def _tokenize(expr: str) -> list:
    """'2*(3+.5)' -> [Fraction(2), '*', '(', Fraction(3), '+', Fraction(1, 2), ')']."""
    tokens, i = [], 0
    while i < len(expr):
        if expr[i] == " ":
            i += 1
        elif expr[i] in "+-*/()":
            tokens.append(expr[i])
            i += 1
        elif expr[i] in DIGITS or expr[i] == ".":
            j = i
            while j < len(expr) and (expr[j] in DIGITS or expr[j] == "."):
                j += 1
            number = _unsigned_decimal(expr[i:j]) if j - i <= MAX_EXPR_DIGITS else None
            if number is None:  # "1.2.3", a 31-digit literal
                raise _Refused
            tokens.append(number)
            i = j
        else:  # letters, "**", "^", "%", ",", non-ASCII digits
            raise _Refused
    return tokens


def _bounded(value: Fraction) -> Fraction:
    if abs(value) > MAX_EXPR_MAGNITUDE:  # keeps every intermediate integer small
        raise _Refused
    return value


def _parse_sum(tokens: list, i: int, depth: int) -> tuple[Fraction, int]:
    """sum := product (('+' | '-') product)*"""
    value, i = _parse_product(tokens, i, depth)
    while i < len(tokens) and tokens[i] in ("+", "-"):
        op = tokens[i]
        rhs, i = _parse_product(tokens, i + 1, depth)
        value = _bounded(value + rhs if op == "+" else value - rhs)
    return value, i


def _parse_product(tokens: list, i: int, depth: int) -> tuple[Fraction, int]:
    """product := unary (('*' | '/') unary)*"""
    value, i = _parse_unary(tokens, i, depth)
    while i < len(tokens) and tokens[i] in ("*", "/"):
        op = tokens[i]
        rhs, i = _parse_unary(tokens, i + 1, depth)
        if op == "/" and rhs == 0:
            raise _Refused
        value = _bounded(value * rhs if op == "*" else value / rhs)
    return value, i


def _parse_unary(tokens: list, i: int, depth: int) -> tuple[Fraction, int]:
    """unary := ('+' | '-') unary | '(' sum ')' | number"""
    if depth > MAX_EXPR_DEPTH or i >= len(tokens):
        raise _Refused
    token = tokens[i]
    if token in ("+", "-"):
        value, i = _parse_unary(tokens, i + 1, depth + 1)
        return (-value if token == "-" else value), i
    if token == "(":
        value, i = _parse_sum(tokens, i + 1, depth + 1)
        if i >= len(tokens) or tokens[i] != ")":
            raise _Refused
        return value, i + 1
    if isinstance(token, Fraction):
        return token, i + 1
    raise _Refused  # ")", "*" or "/" where a number should be


def safe_eval(expr: str) -> Fraction | None:
    """Exact value of an arithmetic expression over + - * / ( ) and decimal numbers, or None.

    Never calls eval. Refuses expressions over 200 characters, nesting deeper than 20, number literals over
    30 digits, any intermediate value above 1e30 in size, division by zero and any other character.
    "48/2" -> Fraction(24);  "-(2+3)*.5" -> Fraction(-5, 2);  "1/0", "2**3", "__import__('os')" -> None
    """
    if not isinstance(expr, str) or len(expr) > MAX_EXPR_CHARS:
        return None
    try:
        tokens = _tokenize(expr)
        value, i = _parse_sum(tokens, 0, 0)
    except _Refused:
        return None
    return value if i == len(tokens) else None  # leftovers such as "2 3" or "(1))"


# ----------------------------------------------------------------------------- process (step) rewards


@dataclass(frozen=True)
class Step:
    """One calculator annotation <<expr=claimed>> and its rule-based reward (design: Rule-checked steps)."""

    start: int  # index of its first "<"
    end: int  # index just past its closing ">>": completion[start:end] == "<<expr=claimed>>"
    expr: str
    claimed: str
    reward: float  # 1.0 if safe_eval(expr) equals parse_number(claimed), else 0.0


def _check_step(completion: str, start: int, end: int, tol: float) -> Step:
    # no "=" leaves claimed == "", and a second "=" stays in claimed: parse_number refuses both
    expr, _, claimed = completion[start + 2 : end - 2].partition("=")
    value, claim = safe_eval(expr), parse_number(claimed)
    ok = value is not None and claim is not None and _within(claim, value, tol)
    return Step(start, end, expr, claimed, 1.0 if ok else 0.0)


def step_rewards(completion: str, tol: float = 0.0) -> list[Step]:
    """Every <<expr=value>> annotation in order, each scored 1.0 if the arithmetic is right, else 0.0.

    DeepSeekMath §4.1.3 process supervision, with a rule checker instead of a learned PRM; the trainer
    normalises these rewards over the group and gives each token the sum over the steps ending at or after it.
    "2+3 = <<2+3=5>>5, 5*4 = <<5*4=21>>21" -> rewards [1.0, 0.0], ends [15, 34]
    "<<10/3=3.33>>" -> [0.0], but [1.0] with tol=0.01.   "no annotations" -> []
    """
    steps: list[Step] = []
    if not isinstance(completion, str):
        return steps
    pos = 0
    while len(steps) < MAX_STEPS:
        start = completion.find(STEP_OPEN, pos)
        close = completion.find(STEP_CLOSE, start + 2) if start >= 0 else -1
        if close < 0:
            break
        start = completion.rfind(STEP_OPEN, start, close)  # the "<<" nearest the ">>": skips stray openers
        steps.append(_check_step(completion, start, close + 2, tol))
        pos = close + 2
    return steps


def char_to_token_index(char_pos: int, token_offsets: Sequence[tuple[int, int]]) -> int:
    """Index of the token whose [start, end) character span contains char_pos.

    token_offsets are per-token (start, end) pairs into the same string, as HF tokenizers' Encoding.offsets.
    If char_pos falls in a gap no token covers (a tokenizer that trims spaces), the last token before it is
    returned; positions before the first or past the last token raise ValueError.
    (4, [(0, 3), (3, 6), (6, 9)]) -> 1;   (3, [(0, 3), (4, 6)]) -> 0 (the gap);   (9, [(0, 3)]) -> ValueError
    """
    before, last_end = None, 0
    for i, (start, end) in enumerate(token_offsets):
        if start <= char_pos < end:
            return i
        if start < end <= char_pos:
            before = i  # a non-empty token wholly before char_pos; keep the last one
        last_end = max(last_end, end)
    if before is None or char_pos >= last_end:
        raise ValueError(f"char_pos={char_pos} is outside the tokens' spans (which end at {last_end})")
    return before


# ----------------------------------------------------------------------------- demo


def main() -> None:
    completion = (
        " <think> 347*6 = <<347*6=2082>>2082\n2082+125 = <<2082+125=2207>>2207 </think> <answer> 2207 </answer>"
    )
    print(f"completion: {completion!r}")
    print(f"extract_answer: {extract_answer(completion)!r}")
    components = reward_components(completion, gold="2207")
    print(f"components: {components}  total (R1 Eq. 4): {weighted_sum(components, RewardWeights())}")
    for step in step_rewards(completion):
        print(f"step {step.expr}={step.claimed} -> {step.reward}  ends before char {step.end}")


if __name__ == "__main__":
    main()
