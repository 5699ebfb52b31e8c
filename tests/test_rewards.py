"""Tests for rewards.py: hand-computed examples for every function, then a fuzz test with hostile strings.

Run: python -m pytest -q tests/test_rewards.py   (add -s to see the fuzz timings)
"""

import random
import re
import statistics
import time
from fractions import Fraction

import pytest

import rewards  # importable thanks to tests/conftest.py
from rewards import (
    RewardWeights,
    Step,
    accuracy_reward,
    answers_match,
    char_to_token_index,
    extract_answer,
    format_reward,
    language_consistency_reward,
    parse_number,
    reward_components,
    safe_eval,
    soft_overlong_penalty,
    step_rewards,
    total_reward,
    weighted_sum,
)

# The example completion of the project: what the model writes after "...Assistant:".
ARITHMETIC = " <think> 347*6 = <<347*6=2082>>2082\n2082+125 = <<2082+125=2207>>2207 </think> <answer> 2207 </answer>"
WORD_PROBLEM = (
    " <think> Tom spends 3*4 = <<3*4=12>>12 dollars on apples.\n"
    "He has 20-12 = <<20-12=8>>8 dollars left. </think> <answer> 8 </answer>"
)


# ----------------------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    "text, answer",
    [
        (ARITHMETIC, "2207"),
        (WORD_PROBLEM, "8"),
        ("<answer>-5</answer>", "-5"),
        ("<answer> 1,000 </answer>", "1,000"),
        ("<answer> 3/4 </answer>", "3/4"),
    ],
)
def test_extracts_the_answer_between_r1_answer_tags(text, answer):
    assert extract_answer(text) == answer


def test_extracts_the_answer_after_gsm8k_hashes_up_to_the_end_of_the_line():
    assert extract_answer("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72") == "72"
    assert extract_answer("#### 1,000\nsome trailing line with 5 in it") == "1,000"


def test_extracts_the_answer_inside_boxed():
    assert extract_answer("so the result is \\boxed{-3/4}.") == "-3/4"
    assert extract_answer("\\boxed{{12}}") == "12"  # nested braces are matched


def test_allows_words_and_sentence_punctuation_around_the_one_number():
    assert extract_answer("<answer> 72 dollars. </answer>") == "72"
    assert extract_answer("<answer>The answer is: 1,000.</answer>") == "1,000"
    assert extract_answer("<answer> x = -5 </answer>") == "-5"
    assert extract_answer("<answer> $18 </answer>") == "$18"


@pytest.mark.parametrize(
    "text",
    [
        "<answer> 4 </answer> <answer> 5 </answer>",  # two answer blocks
        "<answer> 4 or 5 </answer>",  # two numbers in one block
        "<answer> 4, 5 </answer>",
        "<answer> 2 + 3 </answer>",
        "<answer> 4 </answer>\n#### 4",  # two markers, even when they agree
        "<answer> \\boxed{4} </answer>",  # a marker nested in another is two markers
        "\\boxed{4} and \\boxed{5}",
        "#### 4\n#### 5",
        "2+2 = 4",  # no marker at all
        "<answer> 4",  # unclosed (a truncated generation)
        "</answer> 4 <answer>",  # closed before it opens
        "\\boxed{4} </answer>",  # a stray closing tag
        "\\boxed 4",  # a box without braces
        "<answer> </answer>",  # no number
        "<answer> four </answer>",
        "<answer> 1e5 </answer>",  # exponents are refused: "1" and "5"
    ],
)
def test_none_or_several_answers_give_none(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize("text", ["<answer> − 5 </answer>", "<answer> −5 </answer>", "<answer> - 5 </answer>"])
def test_a_sign_it_cannot_read_is_refused_rather_than_dropped(text):
    assert extract_answer(text) is None  # reading these as "5" would reward the wrong sign


@pytest.mark.parametrize("digits", ["٧٢", "۷۲", "７２", "७२", "𝟕𝟐", "7٢", "2²"])
def test_non_ascii_digits_in_an_answer_refuse_it(digits):
    assert extract_answer(f"<answer> {digits} </answer>") is None


def test_answer_contents_over_the_cap_are_refused():
    padded = "<answer> 5" + " " * rewards.MAX_ANSWER_CHARS + "</answer>"
    assert extract_answer(padded) is None


# ----------------------------------------------------------------------------- parse_number, answers_match


@pytest.mark.parametrize(
    "written, same_as",
    [("1,000", "1000"), ("+5", "5"), ("12.0", "12"), ("-0", "0"), ("3/4", "0.75"), (" 72. ", "72"), ("$18", "18"),
     ("-$3/4", "-0.75"), (".5", "0.5"), ("1,234,567.50", "1234567.5"), ("007", "7")],
)
def test_parse_number_normalises_written_forms(written, same_as):
    assert parse_number(written) == parse_number(same_as) is not None


def test_parse_number_is_exact():
    assert parse_number("0.1") == Fraction(1, 10)  # a float would give 0.1000000000000000055...
    assert parse_number("3/4") == Fraction(3, 4)


@pytest.mark.parametrize(
    "refused",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e5", "1E5", "1e999", "٧٢", "７２", "²", "½", "−5", "1,00", "1,0000",
     "1/0", "1/2/3", "3/-4", "", ".", "5..", "--5", "5-", "0x10", "1_000", "12%", "$-5", "1 000", None],
)
def test_parse_number_refuses_everything_else(refused):
    assert parse_number(refused) is None


def test_parse_number_caps_the_length_without_parsing_huge_integers():
    assert parse_number("9" * rewards.MAX_NUMBER_CHARS) == 10**100 - 1
    assert parse_number("9" * (rewards.MAX_NUMBER_CHARS + 1)) is None
    fastest = float("inf")
    for _ in range(3):  # the fastest of three, as `timed` below: a scheduler pause is not parse_number's cost
        start = time.perf_counter()
        assert parse_number("9" * 10_000) is None  # int() would raise ValueError past 4,300 digits
        fastest = min(fastest, time.perf_counter() - start)
    assert fastest < 0.01


def test_answers_match_is_exact_by_default_and_relative_with_tol():
    assert answers_match("1,000", "1000")
    assert answers_match("3/4", "0.75")
    assert not answers_match("0.33", "1/3")
    assert answers_match("0.33", "1/3", tol=0.02)  # |0.33 - 1/3| / (1/3) = 0.01
    assert not answers_match("0.001", "0", tol=0.5)  # relative tolerance: a gold 0 only matches exactly
    assert not answers_match(None, "5")


def test_answers_match_rejects_a_negative_or_nan_tolerance():
    with pytest.raises(ValueError, match="tol"):
        answers_match("1", "1", tol=-0.1)
    with pytest.raises(ValueError, match="tol"):
        answers_match("1", "1", tol=float("nan"))


# ----------------------------------------------------------------------------- accuracy_reward


def test_accuracy_reward_is_one_or_zero_as_in_r1():
    assert accuracy_reward(ARITHMETIC, "2207") == 1.0
    assert accuracy_reward(ARITHMETIC, "2,207") == 1.0
    assert accuracy_reward(ARITHMETIC, "2208") == 0.0
    assert accuracy_reward("I don't know", "2207") == 0.0


def test_accuracy_reward_is_plus_or_minus_one_as_in_dapo_eq7():
    assert accuracy_reward(ARITHMETIC, "2207", wrong=-1.0) == 1.0
    assert accuracy_reward(ARITHMETIC, "2208", wrong=-1.0) == -1.0


def test_listing_several_answers_earns_nothing():
    assert accuracy_reward("<answer> 2206 2207 2208 </answer>", "2207") == 0.0
    assert accuracy_reward("<answer> 2207 </answer><answer> 2208 </answer>", "2207") == 0.0


def test_accuracy_reward_raises_on_a_gold_answer_it_cannot_parse():
    with pytest.raises(ValueError, match="gold"):
        accuracy_reward(ARITHMETIC, "about 2200")


# ----------------------------------------------------------------------------- format_reward


@pytest.mark.parametrize(
    "completion",
    [
        ARITHMETIC,
        WORD_PROBLEM,
        "<think>a</think><answer>4</answer>",  # the whitespace between the blocks is optional
        "\n<think>\na\n</think>\n<answer>\n4\n</answer>\n",
        "<think></think> <answer></answer>",  # empty parts: the format is right, accuracy will say the rest
    ],
)
def test_format_reward_accepts_the_r1_template(completion):
    assert format_reward(completion) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "<think> a </think> 4",  # no answer block
        "<answer> 4 </answer>",  # no think block
        "so <think> a </think> <answer> 4 </answer>",  # text before
        "<think> a </think> so <answer> 4 </answer>",  # text between
        "<think> a </think> <answer> 4 </answer> done",  # text after
        "<answer> 4 </answer> <think> a </think>",  # wrong order
        "<think> a <answer> 3 </answer> </think> <answer> 4 </answer>",  # tags inside the reasoning
        "<think> a </think> <answer> 4 </answer> <answer> 5 </answer>",  # a tag twice
        "<think> <think> a </think> <answer> 4 </answer>",
        "<think> a <answer> 4 </answer>",  # unclosed think
        "",
    ],
)
def test_format_reward_rejects_anything_else(completion):
    assert format_reward(completion) == 0.0


# ----------------------------------------------------------------------------- soft_overlong_penalty


def test_soft_overlong_penalty_dapo_eq13_example():
    assert soft_overlong_penalty(90, max_len=100, cache_len=20) == -0.5


@pytest.mark.parametrize(
    "length, expected",
    [(0, 0.0), (80, 0.0), (81, -0.05), (99, -0.95), (100, -1.0), (101, -1.0), (10**9, -1.0)],
)
def test_soft_overlong_penalty_boundaries(length, expected):
    assert soft_overlong_penalty(length, max_len=100, cache_len=20) == pytest.approx(expected)


def test_soft_overlong_penalty_without_a_cache_is_a_hard_cutoff():
    assert soft_overlong_penalty(100, max_len=100, cache_len=0) == 0.0
    assert soft_overlong_penalty(101, max_len=100, cache_len=0) == -1.0


@pytest.mark.parametrize(
    "length, max_len, cache_len, named",
    [(10, 100, 200, "cache_len"), (-1, 100, 20, "length"), (10, -100, 20, "max_len"), (10, 100, -20, "cache_len")],
)
def test_soft_overlong_penalty_names_the_bad_argument(length, max_len, cache_len, named):
    with pytest.raises(ValueError, match=named):
        soft_overlong_penalty(length, max_len, cache_len)


# ----------------------------------------------------------------------------- language_consistency_reward


def test_language_reward_is_the_fraction_of_target_words_in_the_cot():
    assert language_consistency_reward(WORD_PROBLEM) == 1.0
    assert language_consistency_reward("<think> Tom покупает apples </think> <answer> 3 </answer>") == 2 / 3
    assert language_consistency_reward("<think> 汤姆 buys apples </think>") == 2 / 3  # a run of CJK is one word


def test_language_reward_scores_only_the_think_block():
    assert language_consistency_reward("<think> apples </think> <answer> три </answer>") == 1.0


def test_language_reward_is_zero_without_words():
    assert language_consistency_reward(ARITHMETIC) == 0.0  # digits and symbols are not words
    assert language_consistency_reward("") == 0.0


def test_language_reward_without_a_think_block_scores_the_text_but_not_the_tags():
    assert language_consistency_reward("hello мир") == 0.5
    assert language_consistency_reward("<answer> мир </answer>") == 0.0  # "answer" in a tag is not a word


def test_language_reward_takes_a_custom_target_language():
    def is_russian(word):
        return all("\u0400" <= ch <= "\u04ff" for ch in word)

    assert language_consistency_reward("<think> Tom покупает apples </think>", is_target_word=is_russian) == 1 / 3


# ----------------------------------------------------------------------------- safe_eval


@pytest.mark.parametrize(
    "expr, value",
    [("48/2", 24), ("2+3*4", 14), ("(2+3)*4", 20), ("2-3-4", -5), ("12/3/2", 2), ("10/4", Fraction(5, 2)),
     ("-(2+3)*.5", Fraction(-5, 2)), ("--5", 5), (" 1 + 1 ", 2), ("0.2*50", 10), ("1.5-0.25", Fraction(5, 4))],
)
def test_safe_eval_computes_exact_arithmetic_with_precedence(expr, value):
    assert safe_eval(expr) == value


@pytest.mark.parametrize(
    "expr",
    ["", "1/0", "1/(2-2)", "2**3", "2^3", "7//2", "__import__('os').system('ls')", "1e5", "12%", "1,000", "(1", "1)",
     "2 3", "*2", "1.2.3", "٣+1", "1" + "0" * 30, "9" * 15 + "*" + "9" * 15 + "*" + "9" * 5, "1+" * 100 + "1"],
)
def test_safe_eval_refuses_anything_else(expr):
    assert safe_eval(expr) is None


def test_safe_eval_bounds_the_nesting_depth():
    assert safe_eval("(" * rewards.MAX_EXPR_DEPTH + "1" + ")" * rewards.MAX_EXPR_DEPTH) == 1
    assert safe_eval("(" * (rewards.MAX_EXPR_DEPTH + 1) + "1" + ")" * (rewards.MAX_EXPR_DEPTH + 1)) is None
    assert safe_eval("-" * (rewards.MAX_EXPR_DEPTH + 1) + "1") is None


# ----------------------------------------------------------------------------- step_rewards, char_to_token_index


def test_step_rewards_score_each_calculator_step_and_catch_the_wrong_one():
    completion = "<think> 2+3 = <<2+3=5>>5\n5*4 = <<5*4=21>>21\n21-1 = <<21-1=20>>20 </think> <answer> 20 </answer>"
    steps = step_rewards(completion)
    assert [s.reward for s in steps] == [1.0, 0.0, 1.0]
    assert [(s.expr, s.claimed) for s in steps] == [("2+3", "5"), ("5*4", "21"), ("21-1", "20")]
    assert steps[0] == Step(start=14, end=23, expr="2+3", claimed="5", reward=1.0)
    for s in steps:  # end is just past the closing ">>"
        assert completion[s.start : s.end] == f"<<{s.expr}={s.claimed}>>"


def test_step_rewards_of_the_example_completions():
    assert [s.reward for s in step_rewards(ARITHMETIC)] == [1.0, 1.0]
    assert [s.reward for s in step_rewards(WORD_PROBLEM)] == [1.0, 1.0]
    assert step_rewards("no calculator steps") == []


@pytest.mark.parametrize("annotation", ["<<3*4>>", "<<1/0=1>>", "<<2**3=8>>", "<<1=1=1>>", "<<x=1>>", "<<2+2=four>>",
                                        "<<=4>>", "<<>>"])
def test_a_step_that_cannot_be_checked_scores_zero(annotation):
    assert [s.reward for s in step_rewards(f"so {annotation} then")] == [0.0]


def test_stray_openers_before_a_step_are_skipped():
    steps = step_rewards("<< oops <<2+2=4>>")
    assert [(s.start, s.expr, s.reward) for s in steps] == [(8, "2+2", 1.0)]


def test_step_tolerance_accepts_rounded_claims():
    assert [s.reward for s in step_rewards("<<10/3=3.33>>")] == [0.0]
    assert [s.reward for s in step_rewards("<<10/3=3.33>>", tol=0.01)] == [1.0]


def test_step_count_is_capped():
    assert len(step_rewards("<<1+1=2>>" * 1000)) == rewards.MAX_STEPS


@pytest.mark.parametrize(
    "char_pos, offsets, index",
    [(4, [(0, 3), (3, 6), (6, 9)], 1), (0, [(0, 3), (3, 6)], 0), (5, [(0, 3), (3, 6)], 1),
     (3, [(0, 3), (4, 6)], 0),  # in a gap no token covers: the token before it
     (1, [(0, 0), (0, 3), (3, 3)], 1)],  # zero-width special tokens are never chosen
)
def test_char_to_token_index_finds_the_token_containing_the_character(char_pos, offsets, index):
    assert char_to_token_index(char_pos, offsets) == index


@pytest.mark.parametrize("char_pos", [-1, 9, 100])
def test_char_to_token_index_refuses_positions_outside_the_tokens(char_pos):
    with pytest.raises(ValueError, match="char_pos"):
        char_to_token_index(char_pos, [(0, 3), (3, 6), (6, 9)])


def toy_offsets(text):
    """(start, end) per token of a toy tokenizer: words, digit runs and single symbols; spaces are in no token."""
    return [m.span() for m in re.finditer(r"[A-Za-z]+|[0-9]+|\S", text)]


def test_each_step_maps_to_the_token_holding_its_closing_brackets():
    offsets = toy_offsets(WORD_PROBLEM)
    for step in step_rewards(WORD_PROBLEM):
        index = char_to_token_index(step.end - 1, offsets)
        start, end = offsets[index]
        assert (start, end) == (step.end - 1, step.end)  # the toy tokenizer has ">" as its own token
        assert WORD_PROBLEM[start:end] == ">"


# ----------------------------------------------------------------------------- combining the rewards


def test_default_weights_add_accuracy_and_format_as_r1_eq4():
    assert total_reward(ARITHMETIC, "2207") == 2.0  # right answer, right format
    assert total_reward(ARITHMETIC, "2208") == 1.0  # wrong answer, right format
    assert total_reward("#### 2207", "2207") == 1.0  # right answer, wrong format
    assert total_reward("2207", "2207") == 0.0  # no answer marker, no format


def test_total_reward_is_the_weighted_sum_of_the_logged_components():
    weights = RewardWeights(accuracy=1.0, format=0.5, overlong=1.0, language=0.25, accuracy_wrong=-1.0)
    completion = "<think> Tom покупает apples </think> <answer> 7 </answer>"
    components = reward_components(completion, "8", weights, length=90, max_len=100, cache_len=20)
    assert components == {"accuracy": -1.0, "format": 1.0, "overlong": -0.5, "language": 2 / 3}
    expected = 1.0 * -1.0 + 0.5 * 1.0 + 1.0 * -0.5 + 0.25 * (2 / 3)
    assert weighted_sum(components, weights) == pytest.approx(expected)
    assert total_reward(completion, "8", weights, length=90, max_len=100, cache_len=20) == pytest.approx(expected)


def test_dapo_weights_give_plus_minus_one_plus_the_length_penalty():
    dapo = RewardWeights(format=0.0, overlong=1.0, accuracy_wrong=-1.0)
    assert total_reward(ARITHMETIC, "2207", dapo, length=50, max_len=100, cache_len=20) == 1.0
    assert total_reward(ARITHMETIC, "2208", dapo, length=90, max_len=100, cache_len=20) == -1.5


def test_an_overlong_weight_without_a_length_is_an_error():
    with pytest.raises(ValueError, match="length"):
        total_reward(ARITHMETIC, "2207", RewardWeights(overlong=1.0))
    with pytest.raises(ValueError, match="max_len"):
        reward_components(ARITHMETIC, "2207", length=90)


# ----------------------------------------------------------------------------- fuzz: hostile strings

# Every way parse_number accepts to write this 100-digit integer is the 100 digits themselves: a sign,
# separator, leading zero or decimal point would push it past MAX_NUMBER_CHARS, and a fraction a/b would need
# at least 100 digits in a. extract_answer returns a piece of its input, so a string that does not contain
# these digits can never be rewarded for this gold answer.
UNREACHABLE_GOLD = "7" * rewards.MAX_NUMBER_CHARS

UNICODE_DIGITS = ["٧٢", "۳", "７２", "१२३", "৩", "𝟕𝟐", "²³", "½", "Ⅻ", "٫", "−", "五"]
SMALL_PIECES = [
    "<think>", "</think>", "<answer>", "</answer>", "<think", "answer>", "<<", ">>", "<<3*4=12>>", "<<1/0=1>>",
    "<<2**999=1>>", "<<", "=", "\\boxed{", "\\boxed", "{", "}", "####", "#### ", "\n", " ", "  ", "\t", ".", ",", "/",
    "$", "+", "-", "*", "(", ")", "%", "0", "-0", "+5", "1,000", "1,00", "3/4", "0.75", "12.0", "72.", "nan", "NaN",
    "inf", "-inf", "Infinity", "1e999", "1E5", "0x1F", "1_000", "apples", "Tom", "dollars", "покупает", "汤姆",
    "\u200b", "\x00", "\ufeff",
] + UNICODE_DIGITS
BIG_PIECES = [
    "9" * 5000,
    "1" * 10_000,
    "<answer>" * 2000,
    "<<" * 3000,
    "<<1+1=2>>" * 2000,
    "<answer>" * 500 + "5" + "</answer>" * 500,  # deeply nested tags
    "<think>" * 1000 + "</think>" * 1000,
    "\\boxed{" * 1000 + "5" + "}" * 1000,
    "(" * 5000 + "1" + ")" * 5000,
    "####" * 2000,
    "a " * 50_000,  # 100k characters of words
    "é a " * 25_000,
    "<think>" + "apples and pears " * 6000 + "</think> <answer> 5 </answer>",
    "<answer> " + " " * 100_000 + "5 </answer>",
]


def random_unicode(rng, n):
    """n random code points from the whole range, skipping surrogates (which str cannot encode)."""
    return "".join(chr(c if not 0xD800 <= c <= 0xDFFF else 0x20) for c in (rng.randrange(0x110000) for _ in range(n)))


def random_number(rng):
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([1, 2, 3, 30, 99, 101, 5000])))
    return rng.choice(["", "-", "+", "$"]) + digits + rng.choice(["", ".5", "/7", ",000", "e5"])


def hostile_string(rng):
    """Pieces glued at random; sometimes a big piece, sometimes inside a well-formed R1 template."""
    parts = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.01:
            parts.append(rng.choice(BIG_PIECES))
        elif roll < 0.15:
            parts.append(random_number(rng))
        elif roll < 0.25:
            parts.append(random_unicode(rng, rng.randint(1, 20)))
        else:
            parts.append(rng.choice(SMALL_PIECES))
    text = "".join(parts)
    if rng.random() < 0.3:  # reach the code paths behind a well-formed template
        text = f" <think> {text} </think> <answer> {rng.choice(parts)} </answer>"
    return text


def fuzz_calls(text):
    """(name, function) for every reward function, all bound to one hostile string."""
    all_weights = RewardWeights(accuracy=1.0, format=1.0, overlong=1.0, language=1.0)
    return [
        ("extract_answer", lambda: extract_answer(text)),
        ("parse_number", lambda: parse_number(text)),
        ("answers_match", lambda: answers_match(text, UNREACHABLE_GOLD)),
        ("accuracy_reward", lambda: accuracy_reward(text, UNREACHABLE_GOLD)),
        ("accuracy_reward_dapo", lambda: accuracy_reward(text, UNREACHABLE_GOLD, wrong=-1.0)),
        ("format_reward", lambda: format_reward(text)),
        ("language_consistency_reward", lambda: language_consistency_reward(text)),
        ("soft_overlong_penalty", lambda: soft_overlong_penalty(len(text), max_len=4096, cache_len=512)),
        ("step_rewards", lambda: step_rewards(text)),
        ("safe_eval", lambda: safe_eval(text[: rewards.MAX_EXPR_CHARS])),
        ("total_reward", lambda: total_reward(text, UNREACHABLE_GOLD, all_weights, len(text), 4096, 512)),
    ]


def check_result(name, text, result):
    """The claims every call must satisfy, whatever the string."""
    if name == "extract_answer":
        assert result is None or result in text  # an answer is always a piece of the completion
    elif name == "parse_number":
        assert result is None or isinstance(result, Fraction)
    elif name == "answers_match":
        assert result is False
    elif name == "accuracy_reward":
        assert type(result) is float and result == 0.0  # never rewarded: the gold cannot be in the text
    elif name == "accuracy_reward_dapo":
        assert type(result) is float and result == -1.0
    elif name == "format_reward":
        assert type(result) is float and result in (0.0, 1.0)
    elif name == "language_consistency_reward":
        assert type(result) is float and 0.0 <= result <= 1.0
    elif name == "soft_overlong_penalty":
        assert type(result) is float and -1.0 <= result <= 0.0
    elif name == "step_rewards":
        assert len(result) <= rewards.MAX_STEPS
        for step in result:
            assert step.reward in (0.0, 1.0) and text[step.start : step.start + 2] == "<<"
            assert text[step.end - 2 : step.end] == ">>"
    elif name == "safe_eval":
        assert result is None or isinstance(result, Fraction)
    elif name == "total_reward":
        assert type(result) is float and -2.0 <= result <= 2.0  # acc 0, format <= 1, overlong >= -1, lang <= 1


N_FUZZ = 10_000
MAX_SECONDS_PER_CALL = 0.020  # a few ms on a laptop; headroom for a loaded 2-core CI machine


def timed(call):
    """(result, seconds). A call slower than 2 ms is re-run twice and its fastest time kept, as timeit does:
    a pause of the garbage collector or of the OS scheduler is not the reward's own cost."""
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    for _ in range(2 if seconds > 0.002 else 0):
        start = time.perf_counter()
        call()
        seconds = min(seconds, time.perf_counter() - start)
    return result, seconds


def test_fuzz_every_reward_returns_a_float_quickly_and_never_rewards_a_wrong_answer():
    rng = random.Random(1234)
    seconds: dict[str, list[float]] = {}
    n_templates = 0
    for _ in range(N_FUZZ):
        text = hostile_string(rng)
        assert UNREACHABLE_GOLD not in text  # the premise of the "never rewarded" claim
        n_templates += format_reward(text) == 1.0
        for name, call in fuzz_calls(text):
            result, call_seconds = timed(call)
            seconds.setdefault(name, []).append(call_seconds)
            check_result(name, text, result)
    every_call = [s for per_name in seconds.values() for s in per_name]
    slowest = max(seconds, key=lambda name: max(seconds[name]))
    print(
        f"\nfuzz: {N_FUZZ} strings, {len(every_call)} calls, {n_templates} well-formatted; per call: "
        f"median {statistics.median(every_call) * 1e6:.1f} µs, max {max(every_call) * 1e3:.2f} ms ({slowest})"
    )
    for name, per_name in seconds.items():
        print(f"  {name:28s} median {statistics.median(per_name) * 1e6:7.1f} µs   max {max(per_name) * 1e3:6.2f} ms")
    assert n_templates > N_FUZZ // 10  # the template branch really was exercised
    assert max(every_call) < MAX_SECONDS_PER_CALL


def test_fuzz_correct_answers_in_every_format_are_rewarded():
    rng = random.Random(99)
    for _ in range(1000):
        gold = str(rng.randint(-10**6, 10**6))
        written = rng.choice([gold, f"{int(gold):,}", f"{gold}.0", f"{gold}.", f" {gold} "])
        words = " ".join(rng.choice(["Tom", "has", "3*4 = <<3*4=12>>12", "apples", "\n"]) for _ in range(8))
        completion = rng.choice([
            f" <think> {words} </think> <answer> {written} </answer>",
            f"{words}\n#### {written}",
            f"{words} so the answer is \\boxed{{{written}}}.",
        ])
        assert accuracy_reward(completion, gold) == 1.0, completion
