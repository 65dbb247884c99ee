"""Building and training the bundled models: tokenizer, processor, packed batches, save/load, determinism."""
import json
import random

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from tokenprune import zoo
from tokenprune.benchmarks.shapes import eval_split
from tokenprune.benchmarks.shapes_render import render
from tokenprune.benchmarks.shapes_scene import COLORS, DIGITS, REGIONS, SHAPES, scene_with_question
from tokenprune.zoo.build import build_model, build_processor, sincos_2d
from tokenprune.zoo.data import (
    ATTRIBUTES, CONTENT_WORDS, COUNT_SINK, GATHER_HEADS, PREFIX, RELATION_WORDS, SINK, Encoder, anchor, ask_many, ground,
    item_patches, look, make_batch, patch_labels, scene_batch, to_pixels,
)
from tokenprune.zoo.recipe import RECIPES, Recipe
from tokenprune.zoo.train import ALL, RouteTap, Speaker, train

TINY = Recipe("tiny", image_size=32, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2,
              vision_mlp=64, text_hidden=32, text_layers=2, text_heads=4, text_kv_heads=2, text_mlp=64,
              vision_steps=2, vision_batch=2, text_steps=2, text_batch=2, steps=2, batch=2, questions=3, warmup=1,
              route_layer=1)


@pytest.fixture(scope="module")
def processor():
    return build_processor(RECIPES[zoo.DEFAULT])


def user(question):
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def test_word_tokenizer_covers_every_question_and_answers_in_one_token(processor):
    tok = processor.tokenizer
    for _, qa in eval_split(600):
        ids = tok(qa.question, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == qa.question
        answer = tok(qa.answer, add_special_tokens=False)["input_ids"]
        assert len(answer) == 1  # the greedy first token is the whole answer
    assert tok("Is there a RED circle?", add_special_tokens=False)["input_ids"] == \
        tok("is there a red circle ?", add_special_tokens=False)["input_ids"]


def test_processor_builds_the_llava_prompt_the_trainer_encodes(processor):
    scene, qa = scene_with_question(random.Random(1), "relation")
    text = processor.apply_chat_template(user(qa.question), add_generation_prompt=True)
    assert text == f"USER: <image>\n{qa.question} ASSISTANT:"
    image = render(scene, 96)
    out = processor(images=[image], text=[text], return_tensors="pt")
    assert out["input_ids"][0].tolist() == Encoder(processor.tokenizer, 144).single(qa)
    assert torch.equal(out["pixel_values"], to_pixels([image]))


def test_packed_questions_see_exactly_what_a_lone_question_sees():
    proc = build_processor(TINY)
    model = build_model(TINY, proc.tokenizer).eval()
    enc = Encoder(proc.tokenizer, TINY.visual_tokens)
    batch = make_batch(random.Random(4), enc, 2, 4, TINY.image_size, ALL)
    rng = random.Random(4)  # replay the same draws
    scenes, _, _ = scene_batch(rng, 2, TINY.image_size, TINY.grid)
    questions = [ask_many(s, rng, 4, ALL) for s in scenes]
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids, pixel_values=batch.pixel_values).logits
        for b, (scene, qas) in enumerate(zip(scenes, questions)):
            answer_at = (batch.answer_types[b] >= 0).nonzero().flatten() - 1
            assert len(answer_at) == len(qas)
            for qa, at in zip(qas, answer_at):
                text = proc.apply_chat_template(user(qa.question), add_generation_prompt=True)
                alone = model(**proc(images=[render(scene, TINY.image_size)], text=[text], return_tensors="pt"))
                torch.testing.assert_close(alone.logits[0, -1], packed[b, at], rtol=1e-4, atol=1e-5)
                assert batch.labels[b, at + 1] == proc.tokenizer.convert_tokens_to_ids(qa.answer)


def test_route_supervision_reads_the_real_attention_of_its_heads():
    proc = build_processor(TINY)
    model = build_model(TINY, proc.tokenizer).eval()
    model.set_attn_implementation("eager")  # to get attention probabilities to compare with
    batch = make_batch(random.Random(6), Encoder(proc.tokenizer, TINY.visual_tokens), 4, 12, TINY.image_size, ALL)
    additive = torch.zeros(batch.attention_mask.shape).masked_fill(~batch.attention_mask, float("-inf"))
    prefix = slice(0, PREFIX + TINY.visual_tokens)  # <s> (the sink), USER, :, the image
    over_image = [(TINY.route_layer, 0, batch.routes[0]), (TINY.route_layer, 1, batch.routes[1]),
                  (0, 0, batch.finds[0]), (0, 1, batch.finds[1])]
    taps = [RouteTap(model, layer, h) for layer, h, _ in over_image]
    gatherers = [RouteTap(model, layer, h) for layer, h in GATHER_HEADS]
    with torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=additive, position_ids=batch.position_ids,
                    pixel_values=batch.pixel_values, output_attentions=True)
        for tap, (layer, h, (at, target)) in zip(taps, over_image):
            assert len(at) > 0 and torch.allclose(target.sum(-1), torch.ones(len(at)))
            real = out.attentions[layer][at[:, 0], h, at[:, 1]][:, prefix]
            real = real / real.sum(-1, keepdim=True)
            expected = -torch.where(target > 0, target * real.log(), 0.0).sum(-1).mean()
            torch.testing.assert_close(tap.loss(at, target, prefix), expected)
        # the question-reading heads, over each question's own prompt tokens
        for (layer, h), gatherer, (at, target, keys) in zip(GATHER_HEADS, gatherers, batch.gathers):
            assert len(at) > 0
            real = out.attentions[layer][at[:, 0], h, at[:, 1]] * keys
            real = real / real.sum(-1, keepdim=True)
            picked = target > 0
            expected = -(target[picked] * real[picked].log()).sum() / len(at)
            torch.testing.assert_close(gatherer.loss(at, target, keys), expected)
            words = [proc.tokenizer.convert_ids_to_tokens(batch.input_ids[r][t > 0].tolist())
                     for (r, _), t in zip(at.tolist(), target)]
            allowed = set(RELATION_WORDS) if (layer, h) == (0, 2) else set(CONTENT_WORDS)
            assert all(w and set(w) <= allowed for w in words)
    # finders look from attribute words; routes from the last prompt token of questions about a named cell
    found = proc.tokenizer.convert_ids_to_tokens(batch.input_ids[batch.finds[0][0][:, 0], batch.finds[0][0][:, 1]])
    assert set(found) <= set(ATTRIBUTES)
    asked = proc.tokenizer.convert_ids_to_tokens(batch.input_ids[batch.routes[0][0][:, 0], batch.routes[0][0][:, 1]])
    assert set(asked) == {":"}


def test_attention_targets_point_at_the_evidence_and_count_with_the_sink():
    grid = 12
    for seed in range(20):
        for qtype in ("color", "ocr", "exist", "count", "relation"):
            scene, qa = scene_with_question(random.Random(seed), qtype)
            at = {it.cell: it for it in scene.items}
            heads = look(scene, qa, grid)
            if qtype in ("color", "ocr", "relation"):  # the named cell's item; a relation's two objects, one a head
                cells = qa.cells if qtype == "relation" else qa.cells * 2
                for target, cell in zip(heads, cells):
                    assert abs(float(target.sum()) - 1) < 1e-6 and target[SINK] == 0
                    assert set((target[PREFIX:] > 0).nonzero().flatten().tolist()) == set(item_patches(at[cell], grid))
            else:
                assert heads is None
            for word in qa.question.split():
                if word not in ATTRIBUTES:
                    continue
                hits = [it for it in scene.shapes if ATTRIBUTES[word] in (it.color, it.shape)]
                count, where = ground(scene, word, grid)
                n = len(hits)
                assert abs(float(count[PREFIX:].sum()) - n / (n + COUNT_SINK)) < 1e-6  # the mass off the sink counts
                assert set((count[PREFIX:] > 0).nonzero().flatten().tolist()) == {anchor(it, grid) for it in hits}
                assert where[SINK] == (0 if hits else 1)
                assert set((where[PREFIX:] > 0).nonzero().flatten().tolist()) == \
                    {i for it in hits for i in item_patches(it, grid)}
                if qtype == "count":
                    assert str(n) == qa.answer


def test_speaker_asks_each_patch_for_the_words_of_what_it_shows(processor):
    recipe = RECIPES[zoo.DEFAULT]
    model = build_model(recipe, processor.tokenizer)
    speaker = Speaker(model, processor.tokenizer, recipe.grid)
    cells = speaker.cells.view(12, 12)
    assert cells[0, 0] == REGIONS.index("northwest") and cells[11, 11] == REGIONS.index("southeast")
    assert cells[5, 6] == REGIONS.index("center") and cells[0, 11] == REGIONS.index("northeast")
    scene, _ = scene_with_question(random.Random(3), "ocr")
    labels = patch_labels(scene, 12)[None]
    emb = model.get_input_embeddings().weight.detach()
    ids = processor.tokenizer.convert_tokens_to_ids

    def said(rows):  # each patch states the sum of the embeddings of the given words
        speaker.visual = 400 * torch.stack([sum(emb[ids(w)] for w in words) for words in rows])[None]
        return speaker.loss(labels).item()

    def words(i, shift=0):
        c, s, d = (labels[0, i, :3] - 1).tolist()
        out = [REGIONS[(int(speaker.cells[i]) + shift) % 9]]
        out += [COLORS[(c + shift) % 6], SHAPES[(s + shift) % 5]] if c >= 0 else []
        return out + ([DIGITS[(d + shift) % 10]] if d >= 0 else [])

    right = said([words(i) for i in range(144)])
    wrong = said([words(i, shift=1) for i in range(144)])
    assert right < 0.05 and wrong > 5


def test_model_is_stock_llava_with_frozen_2d_sinusoid_positions(processor):
    recipe = RECIPES[zoo.DEFAULT]
    model = build_model(recipe, processor.tokenizer)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(model.model.vision_tower).__name__ == "CLIPVisionModel"
    assert type(model.model.language_model).__name__ == "LlamaModel"
    assert model.config.text_config.num_hidden_layers >= 3  # layers left after a prune at layer 2
    assert recipe.visual_tokens >= 144
    pos = next(p for n, p in model.named_parameters(remove_duplicate=False) if "position_embedding" in n)
    assert not pos.requires_grad
    torch.testing.assert_close(pos[1:], sincos_2d(recipe.grid, recipe.vision_hidden))
    codes = sincos_2d(12, 64)
    assert torch.cdist(codes, codes).add(torch.eye(144)).min() > 0.1  # every grid cell has its own code
    half = codes.view(12, 12, 64)
    assert torch.equal(half[3, :, :32], half[3, 0, :32].expand(12, 32))  # first half: the row only


def test_patch_labels_name_the_item_under_each_patch():
    scene, _ = scene_with_question(random.Random(2), "ocr")
    labels = patch_labels(scene, 12)
    for it in scene.items:
        r, c = min(11, int(it.y * 12)), min(11, int(it.x * 12))
        got = labels[r * 12 + c].tolist()
        if it.digit is not None:
            assert got[2] == 1 + DIGITS.index(it.digit)
        else:
            assert got[:2] == [1 + COLORS.index(it.color), 1 + SHAPES.index(it.shape)]
        assert got[3] == 1 and r * 12 + c == anchor(it, 12)  # one patch per item marks its centre
    assert int(labels[:, 3].sum()) == len(scene.items)
    assert (labels == 0).all(-1).any()  # background patches exist


def test_training_is_deterministic_and_saves_a_loadable_checkpoint(tmp_path):
    stats = train(TINY, tmp_path / "a", log=lambda line: None)
    train(TINY, tmp_path / "b", log=lambda line: None)
    assert stats["steps"] == 2 and stats["device"] in ("cpu", "cuda")
    a = LlavaForConditionalGeneration.from_pretrained(tmp_path / "a")
    b = LlavaForConditionalGeneration.from_pretrained(tmp_path / "b")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert json.loads((tmp_path / "a" / "recipe.json").read_text())["recipe"]["seed"] == 0
    proc = AutoProcessor.from_pretrained(tmp_path / "a")
    scene, qa = scene_with_question(random.Random(0), "color")
    inputs = proc(images=[render(scene, TINY.image_size)],
                  text=[proc.apply_chat_template(user(qa.question), add_generation_prompt=True)],
                  return_tensors="pt")
    out = a.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    with pytest.raises(FileNotFoundError, match="available"):
        zoo.checkpoint_path("no-such-model")
