"""Preprocessing: any image in, an MNIST-like 28x28 digit out, or a documented error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import drawn_large
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps, PngImagePlugin

from digit_recognizer import greystats, images, segment
from digit_recognizer import preprocess as pp
from digit_recognizer.errors import DigitsError, ImageError, ImageTooLargeError, NoDigitError


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def paper_photo(mnist_digit: np.ndarray, size: int = 300, corner=(30, 40)) -> Image.Image:
    """A MNIST digit as dark ink on light paper, 6x larger, off-centre on a big canvas."""
    big = Image.fromarray(mnist_digit).resize((168, 168), Image.Resampling.BICUBIC)
    canvas = np.full((size, size), 235, np.float32)
    top, left = corner
    canvas[top : top + 168, left : left + 168] -= np.asarray(big, np.float32) * 0.85
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def center_of_mass(view: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(view.shape)
    return (rows * view).sum() / view.sum(), (cols * view).sum() / view.sum()


@pytest.fixture(scope="module")
def digits(small_mnist):
    return small_mnist.x_test[:20]


def test_mnist_digits_pass_through_almost_unchanged(digits):
    for digit in digits:
        view = pp.preprocess(digit.astype(np.float32))
        assert view.shape == (28, 28) and view.dtype == np.float32
        assert np.abs(view - digit).mean() < 6  # grey levels, out of 255


def test_photo_is_inverted_cropped_scaled_and_centred(digits):
    for k, digit in enumerate(digits[:8]):
        view = pp.preprocess(encode(paper_photo(digit, corner=(10 + 9 * k, 100 - 9 * k))))
        ys, xs = np.nonzero(view > 30)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 in (19, 20, 21)  # longer side ~20 px
        cy, cx = center_of_mass(view)
        assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5
        assert view[0].max() < 1 and view[:, 0].max() < 1  # black border, light ink
        # Same digit as MNIST presents it: the views correlate strongly.
        assert (
            np.corrcoef(view.ravel(), pp.preprocess(digit.astype(np.float32)).ravel())[0, 1] > 0.8
        )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_common_format(digits, fmt):
    image = paper_photo(digits[0])
    reference = pp.preprocess(encode(image, "PNG"))
    view = pp.preprocess(encode(image, fmt))
    assert np.abs(view - reference).mean() < 12


def test_exif_orientation_is_applied(digits):
    upright = paper_photo(digits[1])
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # how a phone stores it sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = pp.preprocess(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    plain = pp.preprocess(encode(upright, "JPEG", quality=95))
    assert np.abs(rotated - plain).mean() < 12


def test_transparent_background_is_white_paper(digits):
    ink = np.asarray(Image.fromarray(digits[2]).resize((140, 140)), np.uint8)
    rgba = np.zeros((140, 140, 4), np.uint8)  # black ink, alpha = ink coverage
    rgba[..., 3] = ink
    view = pp.preprocess(encode(Image.fromarray(rgba, "RGBA")))
    assert (
        np.corrcoef(view.ravel(), pp.preprocess(digits[2].astype(np.float32)).ravel())[0, 1] > 0.8
    )


def test_opaque_rgba_is_read_as_its_colours_and_a_clear_pixel_as_paper(digits):
    # A browser canvas: RGBA, every pixel opaque. One clear pixel must still be composited.
    rgb = np.array(paper_photo(digits[2]).convert("RGB"))
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    opaque = Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    assert np.array_equal(images.to_grey(opaque), images.to_grey(opaque.convert("RGB")))
    alpha[0, 0] = 0
    rgb[0, 0] = 0  # black, but fully transparent: paper shows through
    one_clear = Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    assert images.to_grey(one_clear)[0, 0] == 255


def test_sixteen_bit_grey(digits):
    wide = (np.asarray(paper_photo(digits[3]), np.uint16) * 257).astype(np.uint16)
    view = pp.preprocess(encode(Image.fromarray(wide)))  # uint16 -> mode I;16
    reference = pp.preprocess(encode(paper_photo(digits[3])))
    assert np.abs(view - reference).mean() < 3


def test_marker_and_hairline_come_out_alike(digits):
    from scipy import ndimage

    big = np.asarray(Image.fromarray(digits[4]).resize((224, 224)), np.float32)
    marker = ndimage.grey_dilation(big, size=15)  # a thick felt-tip
    hairline = np.where(ndimage.grey_erosion(big, size=9) > 128, 255.0, 0.0)  # a fine pen
    widths = []
    for image in (marker, hairline):
        view = pp.preprocess(image)
        widths.append(pp.stroke_width(view > 100))
    assert all(1.5 < w < 5.0 for w in widths), widths


def test_bold_strokes_are_not_taken_for_paper():
    # A ring 60 px wide on 512 px paper: a background window narrower than the stroke
    # (a fixed 40 px one did this) sees the stroke as paper and cuts its middle out.
    rows, cols = np.indices((512, 512))
    radius = np.hypot(rows - 256, cols - 256)
    page = np.where(np.abs(radius - 150) < 30, 20.0, 230.0).astype(np.float32)
    ink = pp.ink_map(page)
    assert ink[256, 256 + 150] > 200  # the middle of the stroke is ink
    assert ink[256, 256] < 10 and ink[5, 5] < 10  # inside the ring and outside: paper


def test_a_coarse_scan_keeps_its_strokes():
    """A bold digit as an 8x8 block scan (32 px, strokes one or two blocks wide) keeps its
    ink: thinning it to MNIST's stroke took whole strokes away (an 8 read as 1); one 8 kept
    under half the ink its full-resolution picture gives (now every digit keeps as much)."""
    from digit_recognizer import scans, synth

    rng = np.random.default_rng(0)
    for digit in (0, 6, 8, 9) * 3:
        image = synth.render(digit, next(iter(synth.ALLOGRAPHS[digit])), "marker", rng)
        full = pp.preprocess(image.astype(np.float32))
        ink = np.where(image < 128, 255 - image, 0).astype(np.uint8)  # no paper texture
        coarse = pp.preprocess(scans.block_scan(ink).astype(np.float32))
        assert np.count_nonzero(coarse > 100) >= 0.8 * np.count_nonzero(full > 100), digit


@given(
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9))),
    st.integers(2, 6),
    st.integers(0, 80),
)
@settings(max_examples=60, deadline=None)
def test_a_pixel_replicated_image_is_found_with_its_factor(small, factor, where):
    """Every factor x factor block one grey: found, with the largest such factor; one pixel
    changed inside a block (or any ordinary image): not found."""
    big = np.kron(small, np.ones((factor, factor), np.uint8)).astype(np.float32)
    found = pp.replication_factor(big)
    assert found % factor == 0 and np.array_equal(
        np.kron(big[::found, ::found], np.ones((found, found))), big
    )
    row, col = divmod(where % big.size, big.shape[1])
    if row % factor or col % factor:  # a pixel that repeats another in its block
        broken = big.copy()
        broken[row, col] = 255 - broken[row, col]  # 255 is odd: never the same grey
        assert pp.replication_factor(broken) < found


def test_block_scans_are_read_from_their_own_pixels(small_mnist):
    """An 8x8 block scan shown at 32 px is enlarged again from its 64 pixels: its view is
    closer to the digit's own view than when its blocks' staircase is read as the outline
    (MNIST digits, mean correlation of the views), and an ordinary image passes unchanged."""
    from digit_recognizer import scans

    def view_without_smoothing(grey):
        ink = pp.ink_map(grey)
        return pp.digit_from_ink(ink, pp.ink_mask(ink))

    def likeness(read) -> float:
        scores = []
        for image in small_mnist.x_test[:60]:
            own = pp.preprocess(255 - image.astype(np.float32))
            scan = scans.block_scan(image).astype(np.float32)
            scores.append(np.corrcoef(read(scan).ravel(), own.ravel())[0, 1])
        return float(np.mean(scores))

    smoothed, staircase = likeness(pp.preprocess), likeness(view_without_smoothing)
    assert smoothed > staircase + 0.01, (smoothed, staircase)
    photo = small_mnist.x_test[0].astype(np.float32)
    assert pp.smooth_blocks(photo) is photo


def test_half_size_reading_agrees_with_full_size(digits):
    correlations = []
    for digit in digits[:12]:
        grey = drawn_large(digit, 280)  # the digit spans > 2 x DETAIL px: read at half size
        ink = pp.ink_map(grey)
        full_size = pp.digit_from_ink(ink, pp.ink_mask(ink))
        correlations.append(np.corrcoef(pp.preprocess(grey).ravel(), full_size.ravel())[0, 1])
    # The same digit; stroke normalisation may land a pixel thicker or thinner (0.81-1.0).
    assert np.mean(correlations) > 0.9 and min(correlations) > 0.7, correlations


def test_small_digit_in_a_large_image_is_read_at_full_size(digits):
    page = np.full((400, 400), 230.0, np.float32)
    page[150:250, 150:250] = drawn_large(digits[5], 100) * 0.9  # 100 px: 50 at half size
    ink = pp.ink_map(page)
    assert np.array_equal(pp.preprocess(page), pp.digit_from_ink(ink, pp.ink_mask(ink)))


@pytest.mark.parametrize("shape", [(300, 2), (8, 170), (161, 9), (400, 400)])
def test_thin_or_noisy_large_images_give_a_view_or_no_digit(shape):
    pixels = np.random.default_rng(sum(shape)).uniform(0, 255, shape).astype(np.float32)
    try:
        view = pp.preprocess(pixels)
    except NoDigitError:
        return
    assert view.shape == (28, 28) and np.isfinite(view).all()


@pytest.mark.parametrize("level", [0, 128, 255])
def test_blank_images_are_no_digit(level):
    with pytest.raises(NoDigitError, match="no digit found"):
        pp.preprocess(encode(Image.new("L", (200, 200), level)))


def test_faint_paper_noise_is_no_digit():
    noise = np.random.default_rng(0).normal(200, 3, (200, 200))
    with pytest.raises(NoDigitError):
        pp.preprocess(np.clip(noise, 0, 255).astype(np.float32))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ImageError),
        (b"this is not an image", ImageError),
        (encode(Image.new("L", (64, 64), 255))[:40], ImageError),  # truncated PNG
    ],
)
def test_unreadable_input(data, error):
    with pytest.raises(error):
        pp.preprocess(data)


def pillow_grey(data: bytes) -> np.ndarray:
    """What Pillow alone makes of an image: the reference for the PNG fast path."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return images.to_grey(ImageOps.exif_transpose(image))


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(["L", "RGB", "RGBA"]),
    shape=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    block=st.integers(1, 8),  # runs of one colour, as on a canvas: long matches to inflate
    opaque=st.booleans(),
    level=st.integers(0, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_simple_pngs_are_read_as_pillow_reads_them(mode, shape, block, opaque, level, seed):
    small = np.random.default_rng(seed).integers(0, 256, (*shape, len(mode)), dtype=np.uint8)
    pixels = small.repeat(block, axis=0).repeat(block, axis=1)
    if opaque and mode == "RGBA":
        pixels[..., -1] = 255
    data = encode(Image.fromarray(pixels[..., 0] if mode == "L" else pixels), compress_level=level)
    assert images._simple_png(data, images.MAX_PIXELS) is not None  # libspng read it
    got, expected = images.to_grey(images.open_image(data)), pillow_grey(data)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_other_pngs_are_left_to_pillow(digits):
    photo = paper_photo(digits[4]).resize((60, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate to display
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", '<rdf:Description tiff:Orientation="6"/>')
    others = {
        "palette": encode(photo.convert("P")),
        "grey + alpha": encode(photo.convert("LA")),
        "transparency key": encode(photo, transparency=235),
        "EXIF orientation": encode(photo, exif=exif.tobytes()),
        "XMP orientation": encode(photo, pnginfo=xmp),
        "16-bit": encode(Image.fromarray(np.asarray(photo, np.uint16) * 257)),
        "truncated": encode(photo)[:200],
        "over the pixel limit": encode(Image.new("L", (100, 100))),
    }
    for name, data in others.items():
        assert (
            images._simple_png(data, max_pixels=9_999 if "limit" in name else images.MAX_PIXELS)
            is None
        )
        if name not in ("truncated", "over the pixel limit"):
            assert np.array_equal(images.to_grey(images.open_image(data)), pillow_grey(data)), name
    for name in ("EXIF orientation", "XMP orientation"):
        rotated = images.to_grey(images.open_image(others[name]))
        assert np.array_equal(rotated, images.to_grey(photo.transpose(Image.Transpose.ROTATE_270)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(33, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_canvas_pngs_only_raise_documented_errors(damage):
    """Uploads reach libspng: bytes changed after the header must give a view or a clean error."""
    data = bytearray(encode(Image.new("RGBA", (280, 280), "white")))
    for position, value in damage:
        data[position % len(data)] = value
    try:
        view = pp.preprocess(bytes(data))
    except DigitsError:
        return
    assert view.shape == (28, 28)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("L", (10_000, 5_000), 255))  # 50 Mpx of white, ~50 kB as PNG
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="over the 40,000,000-pixel limit"):
        pp.preprocess(bomb)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_documented_errors(data):
    try:
        view = pp.preprocess(data)
    except DigitsError:
        return
    assert view.shape == (28, 28)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 120), st.integers(1, 120))),
    st.sampled_from(["PNG", "JPEG", "BMP"]),
)
def test_random_images_give_a_digit_view_or_no_digit(pixels, fmt):
    try:
        view = pp.preprocess(encode(Image.fromarray(pixels), fmt))
    except (NoDigitError, ImageError):
        return
    assert view.shape == (28, 28) and np.isfinite(view).all()
    assert view.min() >= 0 and view.max() <= 255


def test_split_digits_reads_left_to_right(digits, small_mnist):
    # 2, 0, 2, 5 from the MNIST test set, side by side on paper, the gaps uneven.
    picks = [np.flatnonzero(small_mnist.y_test == d)[0] for d in (2, 0, 2, 5)]
    row = np.full((120, 520), 240.0, np.float32)
    for k, index in enumerate(picks):
        big = np.asarray(Image.fromarray(small_mnist.x_test[index]).resize((100, 100)), np.float32)
        row[10:110, 20 + k * 120 + 5 * k : 120 + k * 120 + 5 * k] -= big * 0.9
    found = segment.split_digits(Image.fromarray(np.clip(row, 0, 255).astype(np.uint8)))
    assert len(found) == 4
    assert [d.box[0] for d in found] == sorted(d.box[0] for d in found)


def test_split_digits_on_a_hairline_says_no_digit():
    # A 1 px line is 'touching digits' 60 px wide: cut windows under 1 px once crashed.
    page = np.full((60, 100), 255, np.uint8)
    page[30, 20:80] = 0
    with pytest.raises(NoDigitError):
        segment.split_digits(Image.fromarray(page))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.uint8, st.tuples(st.integers(1, 120), st.integers(1, 120))))
def test_random_images_give_digits_or_no_digit_in_a_row(pixels):
    try:
        found = segment.split_digits(Image.fromarray(pixels))
    except NoDigitError:
        return
    assert found and all(d.image.shape == (28, 28) for d in found)


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 60), st.integers(1, 60))),
    st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    st.sampled_from([99.5, 90.0, 100.0]),
    st.booleans(),
)
def test_high_percentile_and_histogram_match_numpy(levels, solid, q, fractional):
    # Whole grey levels, often with a solid top (as dark ink gives), or fractions: the
    # histogram path and the np.percentile fallback must both give np.percentile's value.
    ink = levels.astype(np.float32)
    ink[ink > 255 * solid] = 255
    if fractional:
        ink *= 0.37
    assert greystats.high_percentile(ink, q) == np.percentile(ink, q)
    assert np.array_equal(
        greystats.grey_histogram(ink), np.bincount(ink.astype(np.uint8).ravel(), minlength=256)
    )


@settings(max_examples=200, deadline=None)
@given(
    arrays(st.sampled_from([np.uint8, np.float32, np.float64]), st.integers(1, 400)),
    st.floats(0, 100),
)
def test_median_and_percentile_match_numpy_to_the_last_bit(values, q):
    values = np.nan_to_num(values, posinf=0, neginf=0)
    assert greystats.median(values.reshape(1, -1, 1)) == np.median(values)  # any shape, as NumPy
    for ours, numpys in ((greystats.median(values), np.median(values)),
                         (greystats.percentile(values, q), np.percentile(values, q))):  # fmt: skip
        assert ours == numpys and np.asarray(ours).dtype == np.asarray(numpys).dtype


# --- morphology.py against SciPy (preprocessing must not import SciPy: cold start) ----------

masks = arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40)))
grey_images = arrays(np.float32, st.tuples(st.integers(9, 30), st.integers(9, 30)),
                     elements=st.floats(0, 255, width=32))  # fmt: skip


def same_components(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Same pixels labelled, and the labels correspond one to one (numbering may differ)."""
    if not np.array_equal(ours > 0, theirs > 0):
        return False
    pairs = np.unique(np.stack([ours[ours > 0], theirs[theirs > 0]]), axis=1)
    return pairs.shape[1] == len(np.unique(ours[ours > 0])) == len(np.unique(theirs[theirs > 0]))


@settings(max_examples=300, deadline=None)
@given(masks)
def test_label_and_boxes_match_scipy(mask):
    from scipy import ndimage

    from digit_recognizer import morphology

    labels, count = morphology.label(mask)
    expected, expected_count = ndimage.label(mask)
    assert count == expected_count
    assert same_components(labels, expected)
    sizes = morphology.label_sizes(mask)[1]
    assert np.array_equal(sizes[1:], np.bincount(labels.ravel(), minlength=count + 1)[1:])
    boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(expected)]
    assert sorted(morphology.bounding_boxes(labels, count)) == sorted(boxes)


def test_label_joins_only_four_connected_pixels():
    from digit_recognizer import morphology

    diagonal = np.eye(4, dtype=bool)  # touching corners only: four components
    ring = np.ones((5, 5), bool)
    ring[1:4, 1:4] = False
    assert morphology.label(diagonal)[1] == 4
    labels, count = morphology.label(ring)
    assert count == 1 and labels[2, 2] == 0


@settings(max_examples=200, deadline=None)
@given(masks, grey_images, st.sampled_from([1, 3, 5, 7, 9]))
def test_morphology_matches_scipy(mask, image, size):
    from scipy import ndimage

    from digit_recognizer import morphology

    assert np.array_equal(morphology.binary_erosion(mask), ndimage.binary_erosion(mask))
    assert np.array_equal(morphology.binary_dilation(mask), ndimage.binary_dilation(mask))
    assert np.array_equal(morphology.grey_erosion(image, size), ndimage.grey_erosion(image, size))
    assert np.array_equal(morphology.grey_dilation(image, size), ndimage.grey_dilation(image, size))


def test_reading_a_digit_imports_neither_scipy_nor_tensorflow(tmp_path, digits):
    import subprocess
    import sys

    image = tmp_path / "digit.png"
    Image.fromarray(digits[0]).save(image)
    code = (
        "import sys; from digit_recognizer.predict import Recognizer; "
        f"Recognizer().read({str(image)!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'tensorflow'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("paper", "ink"), [(127, 45), (150, 60), (100, 20), (90, 200), (140, 230)])
def test_mid_grey_paper_keeps_the_ink_the_ink(paper, ink):
    """A dim photo's paper near mid-grey: the polarity is the end of the grey levels farther
    from the paper, not which side of 127 the paper falls (paper at 127 and ink at 45 was read
    as light ink, and the digit vanished into the background)."""
    from digit_recognizer.preprocess import dark_ink, preprocess

    grey = np.full((60, 60), float(paper), np.float32)
    grey[10:50, 27:33] = ink  # a 1
    assert dark_ink(grey) == (ink < paper)
    view = preprocess(grey)
    assert view.max() > 200 and view[:, :8].max() == 0  # the stroke is the ink, centred
