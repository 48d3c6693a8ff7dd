"""Conversation batches: padding and masks by hand, the seeded split, resumable draws, ranks."""

from __future__ import annotations

import pytest
import torch

from tinylm.data.batches import IGNORE_INDEX
from tinylm.data.conversation_batches import (
    PAD_ID,
    ConversationBatches,
    ConversationRows,
    pad_rows,
    split_rows,
    validation_batches,
)
from tinylm.errors import TinylmError

ROWS = ConversationRows(
    ids=[[7, 3, 4, 9], [7, 5, 9], [7, 3, 3, 4, 4, 9], [7, 6, 9]],
    masks=[
        [False, False, True, True],
        [False, True, True],
        [False, False, False, True, True, True],
        [False, True, True],
    ],
)


def test_rows_are_shifted_and_padded_to_the_longest_with_the_mask_false_on_padding():
    x, y, mask = pad_rows(ROWS.subset([0, 1]))
    assert x.tolist() == [[7, 3, 4], [7, 5, PAD_ID]]
    assert y.tolist() == [[3, 4, 9], [5, 9, PAD_ID]]
    assert mask.tolist() == [[False, True, True], [True, True, False]]


def test_validation_targets_outside_the_mask_are_ignored_and_rows_stay_in_order():
    batches = validation_batches(ROWS, batch_size=3, max_batches=5, device="cpu")
    assert [len(x) for x, _ in batches] == [3, 1]
    x, y = batches[1]
    assert x.tolist() == [[7, 6]] and y.tolist() == [[6, 9]]
    _, y0 = batches[0]
    assert y0[0].tolist() == [IGNORE_INDEX, 4, 9, IGNORE_INDEX, IGNORE_INDEX]
    assert len(validation_batches(ROWS, 1, 2, "cpu")) == 2  # max_batches caps the pass


def test_two_ranks_score_exactly_the_rows_of_one_process():
    whole = validation_batches(ROWS, batch_size=4, max_batches=1, device="cpu")
    ranks = [validation_batches(ROWS, 2, 1, "cpu", rank=r, world_size=2)[0][1] for r in range(2)]
    assert whole[0][1][:2, : ranks[0].shape[1]].tolist() == ranks[0].tolist()
    assert whole[0][1][2:, : ranks[1].shape[1]].tolist() == ranks[1].tolist()


def test_the_split_is_seeded_disjoint_and_holds_out_a_tenth():
    rows = ConversationRows([[i, i + 1] for i in range(30)], [[False, True]] * 30)
    train, val = split_rows(rows, seed=5)
    assert (len(train), len(val)) == (27, 3)
    assert sorted(train.ids + val.ids) == rows.ids
    assert split_rows(rows, seed=5) == (train, val)
    assert split_rows(rows, seed=6)[1] != val
    with pytest.raises(TinylmError, match="at least 2 conversations"):
        split_rows(rows.subset([0]), seed=5)


def test_a_group_stays_on_one_side_of_the_split():
    rows = ConversationRows([[i, i + 1] for i in range(40)], [[False, True]] * 40)
    groups = [f"topic {i // 4}" for i in range(40)]  # ten topics, four rows each
    train, val = split_rows(rows, seed=2, groups=groups)
    topic = {tuple(ids): groups[ids[0]] for ids in rows.ids}
    held_out = {topic[tuple(ids)] for ids in val.ids}
    assert len(held_out) == 1 and len(val) == 4  # a tenth of the topics, all four rows
    assert not held_out & {topic[tuple(ids)] for ids in train.ids}
    with pytest.raises(TinylmError, match="at least 2"):
        split_rows(rows, seed=2, groups=["one"] * 40)


def test_the_generator_state_is_the_data_position_and_ranks_split_a_step():
    def draw(generator, **where):
        batches = ConversationBatches(ROWS, 2, 2, generator=generator, **where)
        return [[t.tolist() for t in batch] for batch in batches.next_step()]

    gen = torch.Generator().manual_seed(3)
    first = draw(gen)
    state = gen.get_state()
    second = draw(gen)
    again = torch.Generator()
    again.set_state(state)
    assert draw(again) == second and second != first
    # two ranks with half the batch each see the rows one process sees
    one = ConversationBatches(ROWS, 4, 1, generator=torch.Generator().manual_seed(9))
    x_one = one.next_step()[0][0]
    halves = [
        ConversationBatches(
            ROWS, 2, 1, rank=r, world_size=2, generator=torch.Generator().manual_seed(9)
        ).next_step()[0][0]
        for r in range(2)
    ]
    for r, x in enumerate(halves):
        assert x.tolist() == x_one[2 * r : 2 * r + 2, : x.shape[1]].tolist()
    assert one.tokens_per_step == sum(len(row) for row in x_one.tolist()) - int(
        (x_one == PAD_ID).sum()
    )


def test_a_mask_that_does_not_match_its_ids_is_refused():
    with pytest.raises(TinylmError, match="one mask entry per id"):
        ConversationRows([[1, 2]], [[True]])
