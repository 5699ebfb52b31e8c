"""Grader of assignment 2, rule-based rewards: DeepSeek-R1's format reward and the answer extraction."""

import pytest

from rewards import extract_answer, format_reward


@pytest.mark.points(1)
def test_a_well_formed_completion_earns_the_format_reward():
    """<think> ... </think> <answer> ... </answer>, whitespace around: 1.0"""
    assert format_reward(" <think> 2+2 = 4 </think> <answer> 4 </answer>\n") == 1.0
    assert format_reward("<think></think><answer>4</answer>") == 1.0


@pytest.mark.points(2)
def test_missing_extra_or_repeated_tags_earn_nothing():
    """no <think>, text outside the tags, a tag twice, tags out of order: 0.0"""
    for text in ("<answer> 4 </answer>", "<think> a </think> <answer> 4 </answer> and more",
                 "so <think> a </think> <answer> 4 </answer>", "<think> a </think> <answer> 4 </answer> <answer> 5 </answer>",
                 "<answer> 4 </answer> <think> a </think>", "<think> a <answer> 4 </answer> </think>"):
        assert format_reward(text) == 0.0, text


@pytest.mark.points(1)
def test_hostile_inputs_do_not_crash_the_format_reward():
    """None, an empty string, tags only inside other text: 0.0, never an exception"""
    assert format_reward(None) == 0.0 and format_reward("") == 0.0 and format_reward("</think><think>") == 0.0


@pytest.mark.points(2)
def test_the_answer_inside_each_kind_of_marker():
    """<answer> 4 </answer>, '#### 72' and \\boxed{-3/4}: the number as written"""
    assert extract_answer(" <think> x </think> <answer> 4 </answer>") == "4"
    assert extract_answer("Tom has 3+4 = <<3+4=7>>7 apples.\n#### 72") == "72"
    assert extract_answer("so \\boxed{-3/4}") == "-3/4"


@pytest.mark.points(2)
def test_two_answers_or_two_numbers_are_refused_never_guessed():
    """two markers, or two numbers in one: None"""
    assert extract_answer("<answer> 4 </answer> <answer> 5 </answer>") is None
    assert extract_answer("<answer> 4 or 5 </answer>") is None
    assert extract_answer("<answer> 4 </answer>\n#### 4") is None


@pytest.mark.points(1)
def test_malformed_answer_blocks_are_refused():
    """an unclosed <answer>, a stray </answer>, no marker at all: None"""
    assert extract_answer("<answer> 4") is None
    assert extract_answer("#### 5 </answer>") is None
    assert extract_answer("the answer is 4") is None
