"""The simulator's default rating model: latent quality from the item's text, never from its method."""
from __future__ import annotations

import pytest

from mturk_eval.errors import UserError
from mturk_eval.emulators.simulate import (
    ASPECTS, NEUTRAL_QUALITY, RatingModel, content_tokens, item_quality, make_workers, rate_item, text_features,
    text_quality,
)

PERSONA = ["i like cats.", "i work as a baker.", "my favorite color is blue."]
QUESTION = "what do you do for a living?"


def item(response: str, utterance: str = QUESTION, persona: list[str] | None = None, method: str = "prompt_tuning",
         **extra) -> dict:
    return {"item_id": "x", "persona": PERSONA if persona is None else persona, "utterance": utterance,
            "response": response, "method": method, "eval_set": "persona", "attention_check": None, **extra}


def mean_rating(it: dict, aspect: str, model: RatingModel | None = None, n: int = 400) -> float:
    model = model or RatingModel(careless_share=0.0, noise_sd=0.8, worker_bias_sd=0.0)
    w = make_workers(1, model, seed=0)[0]
    return sum(rate_item(w, model, it, aspect) for _ in range(n)) / n


def test_tokens_drop_stopwords_and_strip_suffixes():
    assert content_tokens("I like cats. I'm baking, don't you? The bakers played.") == {"cat", "bak", "play"}
    assert content_tokens("the of and I you like really") == set()
    assert content_tokens("Cats’ toys") == {"cat", "toy"}  # curly apostrophe
    # Japanese: character bigrams, all-hiragana ones (particles, endings) dropped
    assert {"猫が", "好き"} <= content_tokens("私は猫が好きです。") and "です" not in content_tokens("私は猫が好きです。")


def test_persona_overlap_raises_persona_never_below_neutral():
    on = text_quality(item("i bake bread every morning, my cats watch me. what do you do?"))
    off = text_quality(item("the weather is nice today, what do you do?"))
    assert text_features(item("i bake bread for my cats."))["persona_overlap"] == 2
    assert off["persona"] == NEUTRAL_QUALITY  # no relation to the persona: 3 on the scale
    assert on["persona"] > off["persona"] + 1.0
    three = text_quality(item("blue is my favorite color and i have three cats."))
    assert 4.5 < three["persona"] <= 5.0
    jp = {"persona": ["私は猫が好きです。"], "utterance": "趣味は何ですか？"}
    assert text_quality({**jp, "response": "私は猫と遊ぶのが好きです。"})["persona"] > \
        text_quality({**jp, "response": "今日は雨です。"})["persona"]


def test_relevance_rewards_overlap_and_answer_shape():
    answer = text_quality(item("i work for a living as a baker, i bake bread."))["relevance"]
    off_topic = text_quality(item("The mitochondria is the powerhouse of the cell."))["relevance"]
    parrot = text_quality(item(QUESTION))["relevance"]
    assert answer > off_topic + 0.8
    assert parrot < off_topic
    assert text_quality(item("yes, i do.", utterance="do you like dogs?"))["relevance"] > \
        text_quality(item("the sky is grey.", utterance="do you like dogs?"))["relevance"]
    assert text_quality(item(""))["relevance"] == 1.0


def test_fluency_penalises_repetition_junk_shortness_and_truncation():
    clean = text_quality(item("i work as a baker and i love my job."))["fluency"]
    assert clean >= 4.4
    assert text_quality(item("the the the the the the the"))["fluency"] < 2.0
    assert text_quality(item("i like it i like it i like it i like it"))["fluency"] < clean - 2.0
    assert text_quality(item("### @@ <unk> <unk> ## %%"))["fluency"] < 2.0
    assert text_quality(item("ok"))["fluency"] < clean
    assert text_quality(item("i work as a baker and i love my"))["fluency"] < clean  # cut off, no end
    assert text_quality(item(""))["fluency"] == 1.0
    # ordinary repeated function words are no penalty
    assert text_quality(item("The mitochondria is the powerhouse of the cell."))["fluency"] == clean


def test_engagingness_likes_questions_back_and_dislikes_generic_replies():
    asks = text_quality(item("i am a baker, i bake bread every morning. what about you?"))["engagingness"]
    plain = text_quality(item("i am a baker, i bake bread every morning."))["engagingness"]
    generic = text_quality(item("i don't know"))["engagingness"]
    assert asks > plain > generic + 1.0
    long = " ".join(["i bake bread and cakes for people in town"] * 8) + "."
    assert text_quality(item(long))["engagingness"] < plain


def test_no_text_is_neutral_and_the_model_is_deterministic():
    assert text_quality(None) == {a: NEUTRAL_QUALITY for a in ASPECTS}
    assert text_quality({"method": "prompt_tuning"}) == {a: NEUTRAL_QUALITY for a in ASPECTS}
    it = item("i bake bread, do you?")
    assert text_quality(it) == text_quality(dict(it))
    assert all(1.0 <= v <= 5.0 for v in text_quality(it).values())


@pytest.mark.parametrize("aspect", ASPECTS)
def test_the_method_name_does_not_change_the_default_rating(aspect):
    model = RatingModel(careless_share=0.0)
    texts = ["i bake bread every morning, my cats watch me.", "the the the the", "i don't know", ""]
    for text in texts:
        qs = [item_quality(model, item(text, method=m, model=m + "-model"))
              for m in ("prompt_tuning", "finetune_none", "finetune_added", "human", "anything")]
        assert all(q == qs[0] for q in qs)
        runs = []
        for m in ("prompt_tuning", "finetune_none", "finetune_added"):
            w = make_workers(1, model, seed=7)[0]
            runs.append([rate_item(w, model, item(text, method=m), aspect) for _ in range(50)])
        assert runs[0] == runs[1] == runs[2]


def test_expected_ratings_follow_the_text():
    on = item("blue is my favorite color and i have three cats. what do you do?")
    off = item("the weather is nice today. what do you do?")
    assert mean_rating(on, "persona") > mean_rating(off, "persona") + 0.8
    clean, garbled = item("i work as a baker and i love it."), item("baker baker the the the baker baker the the")
    assert mean_rating(clean, "fluency") > mean_rating(garbled, "fluency") + 2.0
    assert {rate_item(make_workers(1, RatingModel(), 1)[0], RatingModel(), on, "persona") for _ in range(50)} <= \
        {1, 2, 3, 4, 5}


def test_attention_checks_and_careless_workers_unchanged():
    check = item("The mitochondria is the powerhouse of the cell.", method="attention_check",
                 attention_check={"aspects": {"relevance": 2}})
    careful = RatingModel(careless_share=0.0, noise_sd=0.0, worker_bias_sd=0.0)
    w = make_workers(1, careful, seed=0)[0]
    assert all(rate_item(w, careful, check, "relevance") <= 2 for _ in range(100))
    sloppy = RatingModel(careless_share=1.0)
    w = make_workers(1, sloppy, seed=0)[0]
    assert {rate_item(w, sloppy, check, "relevance") for _ in range(200)} == {1, 2, 3, 4, 5}


def test_quality_override_is_an_explicit_opt_in():
    model = RatingModel(quality={"prompt_tuning": {"persona": 5}})
    text = "the weather is nice today."
    overridden = item_quality(model, item(text, method="prompt_tuning"))
    plain = item_quality(model, item(text, method="finetune_none"))
    assert overridden["persona"] == 5.0 and plain["persona"] == text_quality(item(text))["persona"]
    assert overridden["fluency"] == plain["fluency"]  # aspects not listed stay text-based
    assert item_quality(RatingModel(), item(text, method="prompt_tuning")) == text_quality(item(text))
    assert RatingModel().quality is None
    with pytest.raises(UserError, match="quality: prompt_tuning.persona"):
        RatingModel(quality={"prompt_tuning": {"persona": 7}})
