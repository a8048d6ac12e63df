"""attnlab.data: generators are seeded, offline and shaped as documented."""
import pytest
import torch

from attnlab import data


def test_kernel_regression_data_is_seeded_and_shaped():
    a = data.kernel_regression_data(n_train=30, n_test=40, seed=3)
    b = data.kernel_regression_data(n_train=30, n_test=40, seed=3)
    c = data.kernel_regression_data(n_train=30, n_test=40, seed=4)
    assert [t.shape for t in a] == [(30,), (30,), (40,), (40,)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    x_train, y_train, x_test, y_test = a
    assert torch.all(x_train[1:] >= x_train[:-1]) and x_train.min() >= 0 and x_train.max() <= 5
    torch.testing.assert_close(y_test, data.regression_target(x_test))
    noiseless = data.kernel_regression_data(n_train=30, noise=0.0, seed=3)
    torch.testing.assert_close(noiseless[1], data.regression_target(noiseless[0]))


def test_kernel_regression_data_errors():
    with pytest.raises(ValueError, match="n_train"):
        data.kernel_regression_data(n_train=1)
    with pytest.raises(ValueError, match="noise"):
        data.kernel_regression_data(noise=-1)
    with pytest.raises(TypeError, match="seed"):
        data.kernel_regression_data(seed="x")


def test_marked_digits_bar_marks_the_labelled_digit():
    images, labels = data.load_digit_images()
    x, y, box, other = data.marked_digits(32, height=24, width=20, seed=1)
    assert x.shape == (32, 2, 24, 20) and y.shape == (32,) and box.shape == other.shape == (32, 2)
    assert ((box[:, 1] - other[:, 1]).abs() >= 8).all()              # no column is shared
    for k in range(32):
        r, c = box[k].tolist()
        bar = x[k, 1]
        assert bar[:2, c:c + 8].eq(1).all() and bar.sum() == 16     # 2 rows over its 8 columns
        crop = x[k, 0, r:r + 8, c:c + 8]
        assert any(torch.equal(crop, images[i]) for i in torch.nonzero(labels == y[k]).flatten())
        ro, co = other[k].tolist()
        assert x[k, 0].sum() == pytest.approx(crop.sum().item()
                                              + x[k, 0, ro:ro + 8, co:co + 8].sum().item())
    _, _, box14, _ = data.marked_digits(8, height=24, width=20, distance=14, seed=2)
    assert (box14[:, 0] == 2 + 14).all()                            # the gap is below the bar
    g = torch.Generator().manual_seed(5)
    a = data.marked_digits(4, seed=torch.Generator().manual_seed(5))
    b = data.marked_digits(4, seed=g)
    assert all(torch.equal(s, t) for s, t in zip(a, b))


def test_marked_digits_errors():
    with pytest.raises(ValueError, match="width"):
        data.marked_digits(2, width=15)
    with pytest.raises(ValueError, match="height"):
        data.marked_digits(2, height=9)
    with pytest.raises(ValueError, match="distance"):
        data.marked_digits(2, height=24, distance=15)
    with pytest.raises(ValueError, match="split"):
        data.marked_digits(2, split="val")
    with pytest.raises(TypeError, match="seed"):
        data.marked_digits(2, seed="x")


def test_dates_spans_point_at_the_fields_the_iso_date_copies():
    from attnlab.data import DATE_FORMATS, date_text, dates
    d = dates(400, seed=2)
    assert d.src.shape[0] == 400 and d.tgt.shape == (400, 10) and d.spans.shape == (400, 10, d.src.shape[1])
    assert d.src.shape[1] == max(len(t) for t in d.text)  # padded to the longest source
    assert set(d.fmt.tolist()) == set(range(len(DATE_FORMATS)))
    months = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    for text, iso, span in zip(d.text, date_text(d.tgt), d.spans):
        assert date_text(d.src[d.text.index(text)]) == text
        year, month, day = iso.split("-")
        field = ["".join(c for c, s in zip(text, span[t]) if s) for t in range(10)]
        assert field[0] == field[3] == year and field[4] == field[7] == ""  # dashes read nothing
        assert field[5] == month or field[5].startswith(months[int(month) - 1])
        assert field[8] == field[9]
        if field[8][0].isdigit():
            assert int("".join(c for c in field[8] if c.isdigit())) == int(day)
    assert torch.equal(dates(5, seed=3).src, dates(5, seed=3).src)  # seeded
    numeric = dates(20, seed=1, formats=["22.11.2026"])
    assert set(numeric.fmt.tolist()) == {list(DATE_FORMATS).index("22.11.2026")}
    assert all(t.count(".") == 2 for t in numeric.text)


def test_dates_words_and_errors():
    from attnlab.data import _day_words, date_tokens, dates
    assert [_day_words(d) for d in (1, 12, 20, 22, 30, 31)] == [
        "first", "twelfth", "twentieth", "twenty-second", "thirtieth", "thirty-first"]
    with pytest.raises(ValueError, match="formats"):
        dates(3, formats=["3rd of may"])
    with pytest.raises(ValueError, match="cannot encode"):
        date_tokens(["22 Nov 2026"])  # capitals are not in the vocabulary
    with pytest.raises(ValueError, match="n must be"):
        dates(0)


def test_flash_video_marks_where_the_flashed_dot_ends():
    x, y = data.flash_video(50, seed=4)
    assert x.shape == (50, 4, 5, 8, 8) and y.shape == (50, 1, 8, 8)
    assert torch.all(y.sum((1, 2, 3)) == 1)
    flash = x[:, 3]                                            # (n, T, H, W)
    assert torch.all(flash[:, 0].sum((1, 2)) == 1) and torch.all(flash[:, 1:] == 0)
    for i in range(50):
        fr, fc = torch.nonzero(flash[i, 0])[0]
        colour = x[i, :3, 0, fr, fc]                           # the flashed dot's colour
        er, ec = torch.nonzero(y[i, 0])[0]
        assert torch.equal(x[i, :3, -1, er, ec], colour)       # the target has that colour
        assert max(abs(er - fr), abs(ec - fc)) >= 3            # and lies far from the flash
    still, _ = data.flash_video(5, moving=False, seed=1)
    assert torch.equal(still[:, :3, 0], still[:, :3, -1])
    with pytest.raises(ValueError, match="n_dots"):
        data.flash_video(2, n_dots=4)


def test_cluttered_digits_ink_is_the_digit_alone():
    x, y, box = data.cluttered_digits(6, canvas=20, clutter=6, seed=3)
    x2, y2, box2, ink = data.cluttered_digits(6, canvas=20, clutter=6, seed=3, ink=True)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(box, box2)
    assert ink.shape == x.shape and ink.dtype == torch.bool
    images, labels = data.load_digit_images()
    for k in range(6):
        r, c = box[k].tolist()
        inside = torch.zeros(20, 20, dtype=torch.bool)
        inside[r:r + 8, c:c + 8] = True
        assert not ink[k, 0][~inside].any()                 # no fragment is ink
        assert (x[k, 0][ink[k, 0]] > 0.3).all()              # ink is bright on the canvas
        assert ink[k, 0].sum() >= 8


def test_overlapping_digits():
    x, classes, masks, pixel = data.overlapping_digits(300, seed=1)
    assert x.shape == (300, 1, 16, 16) and masks.shape == (300, 2, 16, 16)
    assert (classes[:, 0] != classes[:, 1]).all()
    both = (masks[:, 0] > 0) & (masks[:, 1] > 0)
    assert both.any()                                        # they overlap
    assert ((pixel > 0) == (masks.amax(1) > 0)).all()        # a class wherever there is ink
    for k in (0, 1):                                         # each owns its ink outside overlap
        alone = (masks[:, k] > 0) & (masks[:, 1 - k] == 0)
        want = (1 + classes[:, k])[:, None, None].expand(-1, 16, 16)
        assert torch.equal(pixel[alone], want[alone])
    assert torch.equal(x, data.overlapping_digits(300, seed=1)[0])
    assert not torch.equal(x[:10], data.overlapping_digits(10, split="test", seed=1)[0])
    with pytest.raises(ValueError, match="canvas must be an int >= 13"):
        data.overlapping_digits(2, canvas=12)


def test_digit_captions():
    x, words, boxes = data.digit_captions(400, seed=2)
    assert x.shape == (400, 1, 24, 24) and words.shape == (400, 3) and boxes.shape == (400, 2, 2)
    assert set(words[:, 1].tolist()) == {10, 11}
    assert all(data.CAPTION_WORDS[w] in ("left-of", "above") for w in words[:, 1].tolist())
    assert (words[:, [0, 2]] < 10).all()
    side = words[:, 1] == 10
    axis = torch.where(side, 1, 0)                           # the caption's axis: col or row
    first = boxes[torch.arange(400), 0, axis]
    second = boxes[torch.arange(400), 1, axis]
    assert (second >= first + 8).all()                       # never overlap, first comes first
    across = boxes[torch.arange(400), :, 1 - axis]
    assert ((across[:, 0] - across[:, 1]).abs() <= 4).all()
    assert (boxes >= 0).all() and (boxes <= 16).all()
    images, labels = data.load_digit_images()
    k = 0
    r, c = boxes[k, 0].tolist()
    assert (x[k, 0, r:r + 8, c:c + 8] >= 0).all() and x[k, 0, r:r + 8, c:c + 8].sum() > 1
    assert torch.equal(x, data.digit_captions(400, seed=2)[0])


def test_big_and_small_digits():
    x, y, kind = data.big_and_small_digits(200, seed=4)
    assert x.shape == (200, 1, 16, 24) and y.shape == kind.shape == (200, 16, 24)
    assert set(y.unique().tolist()) <= {-1, 0, 1, 2, 3}
    assert ((y >= 0) == (kind > 0)).all()                    # labels exactly on the ink
    big, small = (kind == 1).sum((1, 2)).float(), (kind == 2).sum((1, 2)).float()
    assert (big > 2 * small).float().mean() > 0.9             # the big digit has more ink
    for k in range(20):                                       # one class per digit
        for code in (1, 2):
            assert len(y[k][kind[k] == code].unique()) == 1
        cols = (kind[k] == 2).nonzero()[:, 1]
        assert cols.min() >= 16 or cols.max() < 8             # small digit in its 8 columns
    assert (x[:, 0][kind > 0] > 0.3).all()
    with pytest.raises(ValueError, match="classes must be"):
        data.big_and_small_digits(2, classes=(3,))


# --- bad input, one class at a time (issue #28) ----------------------------------------------
# A count that is not an int is a TypeError, one out of range a ValueError; nothing hangs.

@pytest.mark.parametrize("call, error, words", [
    # counts: floats, bools, zero, negative
    (lambda: data.reversal_task(2.5), TypeError, "n must be an int"),
    (lambda: data.reversal_task(True), TypeError, "n must be an int"),
    (lambda: data.reversal_task(0), ValueError, "n must be an int >= 1"),
    (lambda: data.flash_video(2.0), TypeError, "n must be an int"),
    (lambda: data.kernel_regression_data(n_train=2.5), TypeError, "n_train must be an int"),
    (lambda: data.window_counts_task(2, window=2.0), TypeError, "window must be an int"),
    (lambda: data.cluttered_digits(2, clutter=-1), ValueError, "clutter must be an int >= 0"),
    (lambda: data.cluttered_digits(2, clutter=1.5), TypeError, "clutter must be an int"),
    (lambda: data.colour_match(2, square=0), ValueError, "square must be >= 1"),
    (lambda: data.colour_match(2, size=16.0), TypeError, "size must be an int"),
    (lambda: data.colour_match(2, n_colours=7), ValueError, "n_colours must be in"),
    (lambda: data.matching_pairs(2, side=1), ValueError, "side must be an int >= 2"),
    (lambda: data.majority_payload(2, payloads=1), ValueError, "payloads must be an int >= 2"),
    (lambda: data.digit_split(0), ValueError, "test_size must be >= 1"),
    (lambda: data.digit_captions(0), ValueError, "n must be an int >= 1"),
    (lambda: data.marked_digits(2, mark=0), ValueError, "mark must be an int >= 1"),
    (lambda: data.flash_video(2, flash_frame=1.0), TypeError, "flash_frame must be an int"),
    # real-valued hyper-parameters: NaN, inf, negative
    (lambda: data.kernel_regression_data(noise=float("nan")), ValueError, "noise must be a finite"),
    (lambda: data.noisy_channel_digits(2, sigma_signal=-1), ValueError, "sigma_signal must be a"),
    (lambda: data.noisy_channel_digits(2, sigma_noise=float("inf")), ValueError, "sigma_noise"),
    # seeds, splits, names
    (lambda: data.digit_split(100, seed=1.5), TypeError, "seed must be an int"),
    (lambda: data.noisy_channel_digits(2, split="val"), ValueError, "split must be one of"),
    (lambda: data.dates(2, formats="22.11.2026"), TypeError, "formats must be a list"),
    (lambda: data.dates(2, length=5), ValueError, "length must be at least"),
    # sequences of ints
    (lambda: data.two_positions_task(2, offsets=1), TypeError, "offsets must be a pair of ints"),
    (lambda: data.two_positions_task(2, offsets=(1.5, 2)), TypeError, "offsets must be an int"),
    (lambda: data.big_and_small_digits(2, classes=(1, 1)), ValueError, "distinct digits"),
    (lambda: data.big_and_small_digits(2, classes=(0.5, 1.0)), TypeError, "classes must be ints"),
    (lambda: data.big_and_small_digits(2, classes="01"), TypeError, "classes must be a sequence"),
    # tokens and texts
    (lambda: data.date_tokens("2020"), TypeError, "texts must be a list of strings"),
    (lambda: data.date_tokens([]), ValueError, "at least one string"),
    (lambda: data.date_tokens(["2020"], length=0), ValueError, "length must be >= 1"),
    (lambda: data.date_text([-1, 5]), ValueError, r"tokens must lie in \[0, 43\)"),
    (lambda: data.date_text([len(data.DATE_VOCAB)]), ValueError, "tokens must lie in"),
    (lambda: data.date_text(torch.tensor([3.0])), TypeError, "tokens must hold integer ids"),
    (lambda: data.date_text(torch.tensor(3)), ValueError, r"tokens must have shape \(L,\)"),
    (lambda: data.regression_target([1.0]), TypeError, "x must be a torch.Tensor"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_flash_video_says_when_it_cannot_place_the_dots():
    """Issue #28: flash_video(1, size=2, far=1, n_dots=3) passed validation and never returned."""
    with pytest.raises(ValueError, match="cannot place 3 dots on a 2x2 canvas"):
        data.flash_video(1, size=2, far=1, n_dots=3)
    x, _ = data.flash_video(3, size=3, far=2, n_dots=2, seed=0)  # hard, but possible
    assert x.shape == (3, 4, 5, 3, 3)


def test_numpy_integers_are_counts_and_give_the_same_data():
    np = pytest.importorskip("numpy")
    a = data.reversal_task(np.int64(4), np.int64(5), np.int64(3), seed=np.int64(2))
    b = data.reversal_task(4, 5, 3, seed=2)
    assert torch.equal(a[0], b[0])
