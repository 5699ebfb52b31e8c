"""Tests for tasks.py: every claim the module's contract makes, checked directly.

Fast (a few seconds) and self-contained: no network, never reads /work/shared;
GSM8K fixtures are written to tmp_path.
"""

import json
import os
import random
import re
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers

# Make `import tasks` work however pytest is launched (no package, no conftest).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tasks  # noqa: E402
import word_problems  # noqa: E402
from tasks import Problem  # noqa: E402

# One GSM8K calculator step: "expr = <<expr=value>>value", expr without spaces.
STEP = re.compile(r"(?P<expr>[-0-9+*/]+) = <<(?P=expr)=(?P<value>-?\d+)>>(?P=value)")
ARITH_EXPR = re.compile(r"What is (\d+(?:[-+*]\d+)*)\?")


def evaluate(expr: str) -> Fraction:
    """Independent evaluator: Python's own precedence, exact Fractions, digits/operators only."""
    assert re.fullmatch(r"-?\d+(?:[-+*/]\d+)*", expr), expr
    return eval(re.sub(r"\d+", lambda m: f"F({m.group()})", expr), {"F": Fraction})


def steps(p: Problem) -> list[re.Match]:
    """The calculator steps of a solution, asserting one step per line."""
    lines = p.reasoning.split("\n")
    for line in lines:
        assert line.count("<<") == 1, line
    found = [STEP.search(line) for line in lines]
    assert all(found), p.reasoning
    return found


def assert_steps_correct(p: Problem) -> list[int]:
    """Every annotation is correct and the answer is the last value; returns the values."""
    values = []
    for m in steps(p):
        assert evaluate(m["expr"]) == int(m["value"]), m.group()
        values.append(int(m["value"]))
    assert p.answer == str(values[-1])
    return values


def arithmetic_problems(n=300, seed=0, **knobs) -> list[Problem]:
    rng = random.Random(seed)
    return [tasks.arithmetic_problem(rng, **knobs) for _ in range(n)]


# -----------------------------------------------------------------------------
# Arithmetic

KNOB_SETS = [
    {},
    {"digits": 1, "mul_digits": 1, "min_ops": 1, "max_ops": 1},
    {"digits": 4, "mul_digits": 2, "min_ops": 3, "max_ops": 6},
    {"ops": "-", "allow_negative": True, "min_ops": 1, "max_ops": 4},
    {"ops": "*", "min_ops": 1, "max_ops": 1, "mul_digits": 3},
]


@pytest.mark.parametrize("knobs", KNOB_SETS)
def test_every_arithmetic_step_is_correct_and_the_answer_is_the_last_value(knobs):
    for p in arithmetic_problems(**knobs):
        assert_steps_correct(p)
        assert int(p.answer) == evaluate(ARITH_EXPR.fullmatch(p.question)[1])


def test_steps_are_products_first_then_the_chain_left_to_right():
    lines, values = tasks._calculator_steps([347, 6, 125, 89], ["*", "+", "-"])  # 347*6+125-89
    assert "\n".join(lines) == (
        "347*6 = <<347*6=2082>>2082\n"
        "2082+125 = <<2082+125=2207>>2207\n"
        "2207-89 = <<2207-89=2118>>2118"
    )
    assert values == [2082, 2207, 2118]


@pytest.mark.parametrize("knobs", KNOB_SETS)
def test_operator_count_is_uniform_within_min_and_max_ops(knobs):
    lo, hi = knobs.get("min_ops", 2), knobs.get("max_ops", 3)
    counts = Counter(
        len(re.findall(r"[-+*]", ARITH_EXPR.fullmatch(p.question)[1]))
        for p in arithmetic_problems(**knobs)
    )
    assert set(counts) == set(range(lo, hi + 1))  # within bounds, and every count occurs


@pytest.mark.parametrize("knobs", KNOB_SETS)
def test_numbers_respect_digit_bounds_and_factors_are_at_least_2(knobs):
    digits, mul_digits = knobs.get("digits", 3), knobs.get("mul_digits", 1)
    for p in arithmetic_problems(**knobs):
        expr = ARITH_EXPR.fullmatch(p.question)[1]
        for number in re.findall(r"\d+", expr):
            assert len(number) <= digits and (number == "0" or not number.startswith("0"))
        for a, b in re.findall(r"(\d+)\*(\d+)", expr):
            assert int(a) >= 2 and int(b) >= 2 and len(b) <= mul_digits


def test_small_and_large_numbers_are_both_common():
    lengths = Counter(
        len(n) for p in arithmetic_problems(digits=3) for n in re.findall(r"\d+", p.question)
    )
    total = sum(lengths.values())
    assert all(lengths[k] / total > 0.2 for k in (1, 2, 3))  # digit count drawn first


def test_multiplication_never_chains_and_products_come_first():
    for p in arithmetic_problems(digits=2, min_ops=4, max_ops=6):
        assert not re.search(r"\d\*\d+\*", p.question)
        n_products = p.question.count("*")
        exprs = [m["expr"] for m in steps(p)]
        assert all("*" in e for e in exprs[:n_products])
        assert not any("*" in e for e in exprs[n_products:])


def test_only_the_requested_operators_appear():
    for ops in ["+", "-", "+*", "-*"]:
        for p in arithmetic_problems(n=100, ops=ops, allow_negative=True):
            assert set(re.findall(r"[-+*]", ARITH_EXPR.fullmatch(p.question)[1])) <= set(ops)


def test_without_allow_negative_every_intermediate_is_non_negative():
    for p in arithmetic_problems(ops="-+", min_ops=2, max_ops=5):
        assert min(assert_steps_correct(p)) >= 0


def test_allow_negative_produces_negative_answers():
    problems = arithmetic_problems(ops="-", allow_negative=True)
    assert any(p.answer.startswith("-") for p in problems)


def test_same_seed_gives_same_arithmetic_problems_and_other_seed_differs():
    assert arithmetic_problems(seed=7) == arithmetic_problems(seed=7)
    assert arithmetic_problems(seed=7) != arithmetic_problems(seed=8)


@pytest.mark.parametrize(
    "knobs",
    [{"ops": "/"}, {"ops": ""}, {"digits": 0}, {"min_ops": 3, "max_ops": 2},
     {"min_ops": 0}, {"ops": "*", "max_ops": 2}],
)  # fmt: skip
def test_invalid_arithmetic_knobs_raise_value_error(knobs):
    with pytest.raises(ValueError):
        tasks.arithmetic_problem(random.Random(0), **knobs)


# -----------------------------------------------------------------------------
# Word problems


def test_there_are_at_least_12_distinct_word_templates():
    names = word_problems.template_names()
    assert len(names) >= 12 and len(set(names)) == len(names)
    assert len(set(word_problems.WORD_TEMPLATES)) == len(word_problems.WORD_TEMPLATES)


@pytest.mark.parametrize("template", word_problems.WORD_TEMPLATES, ids=word_problems.template_names())
def test_every_template_gives_2_to_4_correct_steps_and_a_non_negative_integer_answer(template):
    rng = random.Random(0)
    for _ in range(100):
        p = template(rng)
        values = assert_steps_correct(p)
        assert 2 <= len(values) <= 4
        assert min(values) >= 0 and re.fullmatch(r"\d+", p.answer)
        assert p.question.endswith("?") and "  " not in p.question
        assert tasks.gsm8k_solution(p).endswith(f"\n#### {p.answer}")
        assert all(line.endswith(".") for line in p.reasoning.split("\n"))


def test_templates_vary_their_questions():
    for template in word_problems.WORD_TEMPLATES:
        rng = random.Random(1)
        assert len({template(rng).question for _ in range(50)}) >= 40, template.__name__


def test_word_problem_picks_every_template_in_500_draws(monkeypatch):
    calls = Counter()

    def recording(template):
        def wrapper(rng):
            calls[template.__name__] += 1
            return template(rng)

        return wrapper

    monkeypatch.setattr(word_problems, "WORD_TEMPLATES", [recording(t) for t in word_problems.WORD_TEMPLATES])
    rng = random.Random(0)
    for _ in range(500):
        word_problems.word_problem(rng)
    assert len(calls) == len(word_problems.WORD_TEMPLATES) and sum(calls.values()) == 500


def test_word_problems_are_reproducible():
    def draw(seed):
        rng = random.Random(seed)
        return [word_problems.word_problem(rng) for _ in range(100)]

    assert draw(3) == draw(3) and draw(3) != draw(4)


def test_gsm8k_solution_appends_the_answer_line():
    p = Problem("Q?", "2+3 = <<2+3=5>>5", "5")
    assert tasks.gsm8k_solution(p) == "2+3 = <<2+3=5>>5\n#### 5"


# -----------------------------------------------------------------------------
# GSM8K loader


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"question": "How many?", "answer": "He has 2+3 = <<2+3=5>>5.\n#### 5"})


def test_load_gsm8k_strips_thousands_separators_and_keeps_annotations(tmp_path):
    reasoning = "He pays 1,000+200 = $<<1000+200=1200>>1,200.\nSo 1,200*2 = <<1200*2=2400>>2,400"
    second = json.dumps({"question": "How much?", "answer": reasoning + "\n#### 2,400"})
    lines = [GOOD, "", "   ", second]
    problems = tasks.load_gsm8k(write_jsonl(tmp_path / "g.jsonl", lines))
    assert problems == [
        Problem("How many?", "He has 2+3 = <<2+3=5>>5.", "5"),
        Problem("How much?", reasoning, "2400"),
    ]
    assert tasks.gsm8k_solution(problems[0]) == json.loads(GOOD)["answer"]


def test_load_gsm8k_uses_the_last_marker_and_strips_whitespace(tmp_path):
    line = json.dumps({"question": "Q?", "answer": "a #### b  \n\n####  -7 \n"})
    assert tasks.load_gsm8k(write_jsonl(tmp_path / "g.jsonl", [line])) == [
        Problem("Q?", "a #### b", "-7")
    ]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"question": "Q?", "answer": ', "invalid JSON"),
        ('["Q?", "#### 5"]', "JSON object"),
        ('{"question": "Q?"}', "'answer'"),
        ('{"question": 3, "answer": "#### 5"}', "'question'"),
        ('{"question": "Q?", "answer": "5"}', "####"),
        ('{"question": "Q?", "answer": "r\\n####  "}', "empty"),
    ],
)
def test_malformed_gsm8k_line_raises_value_error_with_file_and_line(tmp_path, bad, reason):
    path = write_jsonl(tmp_path / "g.jsonl", [GOOD, "", bad, GOOD])  # bad line is line 3
    with pytest.raises(ValueError) as info:
        tasks.load_gsm8k(path)
    assert str(info.value).startswith(f"{path}:3: ") and reason in str(info.value)


def test_missing_gsm8k_file_raises_file_not_found_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        tasks.load_gsm8k(tmp_path / "nope.jsonl")


# -----------------------------------------------------------------------------
# Prompt templates


def test_r1_template_is_the_paper_text_verbatim():
    prompt = tasks.format_prompt("What is 2+3?", "r1")
    assert prompt.startswith("A conversation between User and Assistant. The user asks a question")
    assert "i.e., <think> reasoning process here </think> <answer> answer here </answer>." in prompt
    assert prompt.endswith(" User: What is 2+3?. Assistant:")  # the paper's period, kept literally
    assert tasks.TEMPLATES == {"r1": tasks.R1_ZERO_TEMPLATE, "compact": tasks.COMPACT_TEMPLATE,
                               "r1_chatml": tasks.CHATML_TEMPLATE, "r1_llama3": tasks.LLAMA3_TEMPLATE}


def test_compact_prompt_and_completion_make_the_sft_text():
    p = Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14", "14")
    text = tasks.format_prompt(p.question) + tasks.format_completion(p)
    assert text == (
        "User: What is 2+3*4?\nAssistant: <think> 3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14 "
        "</think> <answer> 14 </answer>"
    )
    assert list(tasks.corpus_texts([p], "compact")) == [text]


def test_an_answer_only_completion_has_an_empty_think_block_and_the_full_format():
    from rewards import accuracy_reward, format_reward
    p = Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14", "14")
    text = tasks.format_completion(p, show_work=False)
    assert text == " <think> </think> <answer> 14 </answer>"
    assert format_reward(text) == 1.0 and accuracy_reward(text, "14") == 1.0


def test_unknown_template_raises_listing_allowed_values():
    with pytest.raises(ValueError, match="compact"):
        tasks.format_prompt("Q?", "chatml")


# -----------------------------------------------------------------------------
# Splits


def keys(problems):
    return [tasks.normalise_question(p.question) for p in problems]


def test_normalise_question_lowercases_and_collapses_whitespace():
    assert tasks.normalise_question("  What IS\n 2+3?\t") == "what is 2+3?"


@pytest.mark.parametrize("task, knobs", [("arithmetic", {"digits": 2, "max_ops": 2}), ("word", {})])
def test_splits_have_requested_sizes_no_duplicates_and_no_leak(task, knobs):
    train, test = tasks.make_splits(task, 400, 100, seed=0, **knobs)
    assert len(train) == 400 and len(test) == 100
    assert len(set(keys(train))) == 400 and len(set(keys(test))) == 100
    assert not set(keys(train)) & set(keys(test))


def test_same_seed_gives_same_splits_and_other_seed_differs():
    assert tasks.make_splits("word", 50, 20, seed=1) == tasks.make_splits("word", 50, 20, seed=1)
    assert tasks.make_splits("word", 50, 20, seed=1) != tasks.make_splits("word", 50, 20, seed=2)


def test_test_split_does_not_depend_on_train_size():
    _, test_small = tasks.make_splits("arithmetic", 10, 30, seed=5)
    _, test_large = tasks.make_splits("arithmetic", 500, 30, seed=5)
    assert test_small == test_large


def test_knobs_pass_through_to_the_arithmetic_generator():
    train, test = tasks.make_splits("arithmetic", 50, 50, seed=0, ops="+", min_ops=1, max_ops=1)
    assert all(re.fullmatch(r"What is \d+\+\d+\?", p.question) for p in train + test)


def test_too_small_problem_space_raises_value_error_suggesting_harder_knobs():
    # 1-digit a+b has only 100 distinct questions.
    with pytest.raises(ValueError, match="too small.*knobs"):
        tasks.make_splits("arithmetic", 100, 50, seed=0, digits=1, ops="+", min_ops=1, max_ops=1)


def test_unknown_task_raises_listing_allowed_values():
    with pytest.raises(ValueError, match="arithmetic"):
        tasks.make_splits("gsm8k", 10, 10, seed=0)


def test_split_gsm8k_drops_train_questions_seen_in_test():
    a, b = Problem("How many cats?", "r", "1"), Problem("How many dogs?", "r", "2")
    c = Problem("X?", "r", "3")
    train, test = tasks.split_gsm8k([a, b, c], [Problem("how  many CATS?", "r", "1")])
    assert train == [b, c] and test == [Problem("how  many CATS?", "r", "1")]


# -----------------------------------------------------------------------------
# Tokenizer


def sample_problems(seed: int, n: int) -> list[Problem]:
    rng = random.Random(seed)
    knobs = {"digits": 4, "max_ops": 5, "allow_negative": True}
    arithmetic = [tasks.arithmetic_problem(rng, **knobs) for _ in range(n)]
    return arithmetic + [word_problems.word_problem(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def tok():
    problems = sample_problems(seed=0, n=500)
    texts = list(tasks.corpus_texts(problems, "compact"))
    texts += tasks.corpus_texts(problems[::10], "r1")
    return tasks.train_tokenizer(texts, vocab_size=512)


@pytest.fixture(scope="module")
def unseen_texts():
    problems = sample_problems(seed=1, n=200)
    return [tasks.format_prompt(p.question, t) + tasks.format_completion(p)
            for p in problems for t in tasks.TEMPLATES]  # fmt: skip


def test_tokenizer_round_trips_every_problem_exactly(tok, unseen_texts):
    for text in unseen_texts:
        assert tasks.decode(tok, tasks.encode(tok, text)) == text


def test_tokenizer_round_trips_odd_whitespace_and_unicode(tok):
    odd = ["  two  spaces ", "\n\nlead\tand trail\n", " 1,000 $12.50 -7 ", "café 漢字 ✓", ""]
    for text in odd:
        assert tasks.decode(tok, tasks.encode(tok, text)) == text


def test_every_digit_is_its_own_token(tok, unseen_texts):
    # In the whole vocabulary, a token holding a digit is exactly that digit ...
    for token in tok.get_vocab():
        if re.search(r"\d", token):
            assert re.fullmatch(r"\d", token), token
    # ... so every digit of a text encodes to one token, e.g. " 2082" -> " ", "2", "0", "8", "2".
    for text in unseen_texts[:50]:
        pieces = [tasks.decode(tok, [i]) for i in tasks.encode(tok, text)]
        digit_pieces = [piece for piece in pieces if re.search(r"\d", piece)]
        assert all(re.fullmatch(r"\d", piece) for piece in digit_pieces)
        assert len(digit_pieces) == len(re.findall(r"\d", text))


def test_tags_are_single_special_tokens_and_pad_is_0_eos_is_1(tok):
    assert tasks.PAD_ID == 0 and tasks.EOS_ID == 1
    assert [tok.token_to_id(t) for t in tasks.SPECIAL_TOKENS] == list(range(6))
    ids = tasks.encode(tok, " <think> 1 </think> <answer>2</answer><eos><pad>")
    for tag in tasks.SPECIAL_TOKENS:
        assert tok.token_to_id(tag) in ids
        assert tasks.encode(tok, tag) == [tok.token_to_id(tag)]
    assert tasks.decode(tok, [tasks.EOS_ID, tasks.PAD_ID]) == "<eos><pad>"


def test_saved_tokenizer_gives_the_same_ids(tok, unseen_texts, tmp_path):
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in unseen_texts[:100]:
        assert tasks.encode(loaded, text) == tasks.encode(tok, text)
        assert tasks.decode(loaded, tasks.encode(loaded, text)) == text


def test_tokenizer_training_is_deterministic():
    texts = list(tasks.corpus_texts(sample_problems(seed=2, n=100)))
    assert tasks.train_tokenizer(texts, 300).to_str() == tasks.train_tokenizer(texts, 300).to_str()


def test_tokenizer_compresses_words_but_not_numbers(tok):
    ids = tasks.encode(tok, "User: What is 347*6+125?\nAssistant:")
    assert tok.get_vocab_size() == 512 and len(ids) < len("User: What is 347*6+125?\nAssistant:")


# -----------------------------------------------------------------------------
# Token spans: which characters of the decoded text each token supplies


def old_token_by_token_spans(tok, ids):
    """The method train.token_ends used: decode each token alone and add up the lengths."""
    spans, pos = [], 0
    for i in ids:
        piece = tasks.decode(tok, [i])
        spans.append((pos, pos + len(piece)))
        pos += len(piece)
    return spans


def prefix_decoding_spans(tok, ids, text):
    """Oracle, for a valid text (no U+FFFD of its own): after the first k tokens, the complete
    characters are the longest common prefix of decode(ids[:k]) and the text (an unfinished
    character decodes to U+FFFD, which never matches)."""
    complete = [0] + [len(os.path.commonprefix([tasks.decode(tok, ids[:k]), text]))
                      for k in range(1, len(ids) + 1)]  # fmt: skip
    return list(zip(complete, complete[1:]))


def assert_contiguous_cover(spans, text, n_ids):
    assert len(spans) == n_ids
    assert "".join(text[s:e] for s, e in spans) == text
    ends = [0] + [e for _, e in spans]
    assert all(s == prev_end and s <= e for (s, e), prev_end in zip(spans, ends))
    assert ends[-1] == len(text)


MULTIBYTE_TEXT = "2+3 = <<2+3=5>>5 é€🙂 ЖЖ <<5*4=20>>20"
CHAR_POOLS = ["0123456789+-*=<> .\n", "abcXYZ", "éüñ", "ЖЩя", "€漢字✓", "🙂👍🏽🇫🇷"]


def random_unicode_text(rng: random.Random) -> str:
    """Valid text mixing ASCII, 2-, 3- and 4-byte characters, tags and calculator steps."""
    parts = []
    for _ in range(rng.randint(1, 30)):
        r = rng.random()
        if r < 0.1:
            parts.append(rng.choice(tasks.SPECIAL_TOKENS))
        elif r < 0.2:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            parts.append(f" <<{a}+{b}={a + b}>>{a + b}")
        else:
            parts.append(rng.choice(rng.choice(CHAR_POOLS)))
    return "".join(parts)


def test_bytes_to_unicode_is_the_table_the_byte_level_pre_tokenizer_uses():
    table = tasks.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert sorted(table.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    # Each byte valid UTF-8 can hold (all but 0xC0, 0xC1, 0xF5..0xFF) maps as ByteLevel maps it.
    text = "".join(chr(c) for c in [*range(0x800), *range(0x800, 0x110000, 0x800)]
                   if not 0xD800 <= c < 0xE000)  # fmt: skip
    assert set(text.encode("utf-8")) == set(range(256)) - {0xC0, 0xC1, *range(0xF5, 0x100)}
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    assert "".join(piece for piece, _ in pre.pre_tokenize_str(text)) == "".join(
        table[b] for b in text.encode("utf-8"))


def test_byte_level_decoder_replaces_invalid_bytes_exactly_as_python_errors_replace():
    # token_spans relies on this: both follow Unicode's "maximal subpart" practice.
    table, rng = tasks.bytes_to_unicode(), random.Random(0)
    interesting = [0x3C, 0x61, 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xFF]
    for _ in range(5000):
        raw = bytes(rng.choice([rng.randrange(256), rng.choice(interesting)])
                    for _ in range(rng.randint(1, 12)))  # fmt: skip
        chars = ["".join(table[b] for b in raw)]
        assert decoders.ByteLevel().decode(chars) == raw.decode("utf-8", errors="replace"), raw


def test_token_spans_of_2000_random_id_sequences_join_to_decode_contiguously_in_order(tok):
    rng, vocab = random.Random(0), tok.get_vocab_size()
    non_ascii = [i for i in range(vocab) if tasks.decode(tok, [i]) == "\ufffd"]  # bytes >= 0x80
    assert len(non_ascii) == 128
    specials = list(range(len(tasks.SPECIAL_TOKENS)))

    def draw() -> int:  # byte tokens >= 0x80 and special tokens often, any token otherwise
        r = rng.random()
        return rng.choice(non_ascii if r < 0.4 else specials if r < 0.5 else range(vocab))

    old_differs = with_special = 0
    for _ in range(2000):
        ids = [draw() for _ in range(rng.randint(0, 40))]
        text = tasks.decode(tok, ids)
        assert_contiguous_cover(tasks.token_spans(tok, ids), text, len(ids))
        old_differs += "".join(tasks.decode(tok, [i]) for i in ids) != text
        with_special += any(i < len(tasks.SPECIAL_TOKENS) for i in ids)
    assert old_differs > 1000 and with_special > 1000  # the draw holds what broke the old method


def test_each_character_belongs_to_the_token_that_completes_it_as_prefix_decoding_says(tok):
    from rewards import char_to_token_index
    rng = random.Random(1)
    texts = [MULTIBYTE_TEXT, "é", "🙂🙂", "<think> café 漢字 </think><eos>"]
    texts += [random_unicode_text(rng) for _ in range(300)]
    n_empty = 0
    for text in texts:
        assert "\ufffd" not in text
        ids = tasks.encode(tok, text)
        assert tasks.decode(tok, ids) == text
        spans = tasks.token_spans(tok, ids)
        assert spans == prefix_decoding_spans(tok, ids, text), text
        n_empty += sum(s == e for s, e in spans)
        # the caller's lookup never lands on an empty span: each character finds its own token
        for c in range(len(text)):
            k = char_to_token_index(c, spans)
            assert spans[k][0] <= c < spans[k][1]
    assert n_empty > 500  # many characters were split across byte tokens


def test_an_invalid_byte_run_is_one_u_fffd_on_the_token_whose_byte_shows_it_invalid(tok):
    lead, tail, eq = (tok.token_to_id(t) for t in ["Ã", "©", "="])  # é is b"\xc3\xa9"
    think = tok.token_to_id("<think>")
    cases = [  # ids, decoded text, expected spans
        ([lead, tail], "é", [(0, 0), (0, 1)]),  # valid: on the token of its last byte
        ([lead, eq, tail], "\ufffd=\ufffd", [(0, 0), (0, 2), (2, 3)]),  # '=' cuts 0xC3 short
        ([eq, lead], "=\ufffd", [(0, 1), (1, 2)]),  # unfinished at the end: on the last token
        ([lead, think], "\ufffd<think>", [(0, 0), (0, 8)]),
    ]
    for ids, text, spans in cases:
        assert tasks.decode(tok, ids) == text
        assert tasks.token_spans(tok, ids) == spans


def test_old_token_by_token_spans_misplace_step_ends_that_token_spans_get_right(tok):
    from rewards import char_to_token_index, step_rewards
    ids = tasks.encode(tok, MULTIBYTE_TEXT)
    text = tasks.decode(tok, ids)
    steps = step_rewards(text)
    assert text == MULTIBYTE_TEXT and [text[s.end - 2 : s.end] for s in steps] == [">>", ">>"]

    def closing_tokens(spans):
        return [ids[char_to_token_index(s.end - 1, spans)] for s in steps]

    old = old_token_by_token_spans(tok, ids)
    assert "".join(tasks.decode(tok, [i]) for i in ids) != text  # U+FFFD pieces ...
    assert old[-1][1] > len(text)  # ... so the lengths add up to more than the text
    assert ">" not in tasks.decode(tok, [closing_tokens(old)[1]])  # the second step lands elsewhere
    assert all(">" in tasks.decode(tok, [t]) for t in closing_tokens(tasks.token_spans(tok, ids)))


def test_token_spans_raise_rather_than_return_spans_that_do_not_match_decode(tok):
    ids = tasks.encode(tok, MULTIBYTE_TEXT)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tasks.token_spans(tok, ids + [tok.get_vocab_size() + 5])
    other = Tokenizer.from_str(tok.to_str())
    other.decoder = decoders.BPEDecoder()  # decodes differently from the bytes token_spans reads
    with pytest.raises(ValueError, match="differs from decode"):
        tasks.token_spans(other, ids)
