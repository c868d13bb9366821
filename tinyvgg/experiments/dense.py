"""``tinyvgg experiment dense-eval``: the VGG paper's dense evaluation, measured.

A VGG-11 with the ImageNet head (width 1/8: convolutions of 8 to 64
channels, FC layers 3136 -> 512 -> 512 -> 10) is evaluated densely
(:class:`tinyvgg.models.DenseVGG`: FC6 a 7x7 convolution, FC7 and FC8 1x1):

1. at 224x224 the dense pass and the model's ordinary forward pass agree to
   rounding: the feature map is 7x7 and the adaptive pool is the identity;
2. a larger image gives a score map of (H // 32 - 6) x (W // 32 - 6)
   positions: 1x1 at 224, 2x2 at 256, ..., 6x6 at 384;
3. the map's positions are the 224x224 windows at a stride of 32 pixels;
   evaluating those crops one by one repeats the convolutions of their
   overlaps, and the dense pass computes them once (counted in MACs and
   timed). The crops' scores are not the map's, though: a crop's
   convolutions see zero padding at its border where the dense pass sees
   the neighbouring pixels (the paper's "different boundary conditions");
4. multi-scale testing averages the softmax over the scales
   Q = {S - 32, S, S + 32} for S = 256 and over horizontal flips.

The network is untrained (seeded) and the image a seeded smooth random
field, so the classes mean nothing; what the numbers show is the machinery.
One departure from torchvision's initialisation: the FC layers are drawn
with He initialisation (as the compact head's are) instead of N(0, 0.01).
At this width N(0, 0.01) shrinks the signal so much that every score is
within 0.005 of zero and every posterior within a hair of 1/10; with He
initialisation the scores differ from class to class and from scale to
scale, which is what multi-scale testing averages over.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import backend, nn
from ..models.dense import DenseVGG, multi_scale_scores, resize_images
from ..models.imagenet import softmax
from ..models.vgg import vgg11
from ..nn import init
from ..io.plotting import pyplot, save_png
from ..tools.summary import summary
from ..tensor import no_grad, tensor
from ..io.texttable import format_table

NAME = "dense-eval"
WIDTH = 1 / 8
CLASSES = 10
SIZES = (224, 256, 288, 320, 384)
TRAINING_SCALE = 256
SCALES = (TRAINING_SCALE - 32, TRAINING_SCALE, TRAINING_SCALE + 32)
CROP = 224
STRIDE = 32  # five 2x2 pools: one feature-map pixel is 32 image pixels


def build_model(seed: int = 0, dtype=np.float32):
    """The experiment's VGG-11 (ImageNet head, width 1/8), FC layers He-initialised."""
    rng = np.random.default_rng(seed)
    model = vgg11(width=WIDTH, num_classes=CLASSES, dtype=dtype, generator=rng)
    linears = [m for m in model.classifier.children() if isinstance(m, nn.Linear)]
    for layer in linears:
        init.kaiming_normal_(layer.weight, mode="fan_in",
                             nonlinearity="linear" if layer is linears[-1] else "relu",
                             generator=rng)
    return model.eval()


def smooth_image(seed: int = 0, size: int = max(SIZES)) -> np.ndarray:
    """A (1, 3, size, size) float32 smooth random image: 12x12 noise, rescaled."""
    noise = np.random.default_rng(seed + 1).standard_normal((1, 3, 12, 12))
    return resize_images(noise, size).astype(np.float32)


def _macs(model, size: int) -> tuple[int, int]:
    """(convolution MACs, FC MACs) of one forward pass of the model at size x size."""
    rows = summary(model, (3, size, size)).rows
    return (sum(r.macs for r in rows if r.kind.startswith("conv")),
            sum(r.macs for r in rows if r.kind.startswith("fc")))


def _timed(function):
    start = time.perf_counter()
    result = backend.to_numpy(function().data)  # to_numpy waits for a GPU to finish
    return result, time.perf_counter() - start


def _figure(image, score_map, winner, per_scale, averaged, out: Path) -> Path:
    plt = pyplot(f"experiment {NAME}")
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    picture = image[0].transpose(1, 2, 0)
    picture = (picture - picture.min()) / (picture.max() - picture.min())
    axes[0].imshow(picture)
    axes[0].add_patch(plt.Rectangle((-0.5, -0.5), CROP, CROP, fill=False, edgecolor="white",
                                    linewidth=1.5))
    axes[0].set_title(f"input {image.shape[2]}x{image.shape[3]}; map cell (0, 0) = "
                      f"this {CROP}x{CROP} window", fontsize=10)
    axes[0].axis("off")
    shown = axes[1].imshow(score_map, cmap="viridis")
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    h, w = score_map.shape
    axes[1].set_title(f"class {winner} score map, {h}x{w}\n(cell (i, j): the window at "
                      f"({STRIDE}i, {STRIDE}j))", fontsize=10)
    axes[1].set_xticks(range(w))
    axes[1].set_yticks(range(h))
    labels = [str(q) for q in per_scale] + ["Q average"]
    values = [per_scale[q] for q in per_scale] + [averaged]
    colours = ["tab:orange" if q in SCALES else "tab:blue" for q in per_scale] + ["tab:red"]
    axes[2].bar(labels, values, color=colours)
    axes[2].axhline(1 / CLASSES, color="grey", linestyle=":", label="chance (1/10)")
    axes[2].set_xlabel("scale Q (shorter side); orange: Q in {"
                       + ", ".join(map(str, SCALES)) + "}")
    axes[2].set_ylabel(f"P(class {winner}), mean over image and flip")
    axes[2].set_title("posterior of the multi-scale winner at each scale", fontsize=10)
    axes[2].set_ylim(0, 1.3 * max(values))
    axes[2].legend(loc="upper left")
    figure.tight_layout()
    return save_png(figure, out / "dense-eval.png")


def run(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    out = Path(out)
    model = build_model(seed).to(device)
    dense = DenseVGG(model)
    image = smooth_image(seed)
    log(f"Dense evaluation of VGG-11 (ImageNet head, width {WIDTH:g}, {CLASSES} classes, "
        f"seeded, untrained) on a smooth random image")

    # 1. agreement at the training size, float32 and a float64 copy of the same weights
    log("")
    log("1. At the training size 224x224: dense map (1x1) against the model's own output")
    agreement, lines = {}, []
    at_224 = resize_images(image, CROP)
    for dtype in (np.float32, np.float64):
        twin = vgg11(width=WIDTH, num_classes=CLASSES, dtype=dtype, init_weights=False)
        twin.load_state_dict(model.state_dict())
        twin.to(device).eval()
        x = tensor(at_224, dtype=dtype, device=device)
        with no_grad():
            plain = backend.to_numpy(twin(x).data)
        mapped = backend.to_numpy(DenseVGG(twin)(x).data)[:, :, 0, 0]
        agreement[np.dtype(dtype).name] = float(np.abs(mapped - plain).max())
        lines.append((np.dtype(dtype).name, f"{np.abs(plain).max():.3f}",
                      f"{agreement[np.dtype(dtype).name]:.1e}"))
    for line in format_table(("dtype", "max |logit|", "max |dense - original|"), lines):
        log(line)
    log("The dense rows at 224 are the flattened 7x7 feature map the classifier reads anyway, "
        "so only the order of floating-point sums could tell the two apart.")

    # 2. score-map shapes
    log("")
    log("2. Score-map shapes: (H // 32 - 6) x (W // 32 - 6)")
    shapes, maps, lines = {}, {}, []
    for size in SIZES:
        score_map = backend.to_numpy(dense(tensor(resize_images(image, size),
                                                  device=device)).data)
        maps[size] = score_map
        shapes[size] = list(score_map.shape[2:])
        lines.append((f"{size}x{size}", f"{size // STRIDE}x{size // STRIDE}",
                      "x".join(map(str, shapes[size])), "x".join(map(str, score_map.shape))))
    for line in format_table(("input", "feature map", "score map", "output shape"), lines):
        log(line)

    # 3. cost: one dense pass against every crop the map stands for
    size = max(SIZES)
    h, w = shapes[size]
    x = tensor(image, device=device)
    crops = np.concatenate([image[:, :, STRIDE * i:STRIDE * i + CROP, STRIDE * j:STRIDE * j + CROP]
                            for i in range(h) for j in range(w)])
    conv_big, fc_one = _macs(model, size)
    conv_crop, _ = _macs(model, CROP)
    dense_macs = conv_big + h * w * fc_one
    crop_macs = h * w * (conv_crop + fc_one)
    dense(x)  # warm-up: the first pass pays for allocations (and GPU kernel compilation)
    dense_map, dense_time = _timed(lambda: dense(x))
    with no_grad():
        crop_scores, crop_time = _timed(lambda: model(tensor(crops, device=device)))
    crop_map = crop_scores.reshape(h, w, CLASSES).transpose(2, 0, 1)
    boundary = float(np.abs(crop_map - dense_map[0]).max())
    same_top = int((crop_map.argmax(axis=0) == dense_map[0].argmax(axis=0)).sum())
    log("")
    log(f"3. Cost at {size}x{size}: one dense pass against the {h * w} crops of {CROP}x{CROP} "
        f"at stride {STRIDE} that its {h}x{w} map stands for")
    for line in format_table(("method", "MACs", "time (s)"),
                       [("dense", f"{dense_macs / 1e6:,.0f}M", f"{dense_time:.3f}"),
                        (f"{h * w} crops", f"{crop_macs / 1e6:,.0f}M", f"{crop_time:.3f}")]):
        log(line)
    log(f"The crops cost {crop_macs / dense_macs:.1f}x the MACs ({crop_time / dense_time:.1f}x "
        "the time): their overlaps are convolved again and again.")
    log(f"They do not give the same scores: max |crop - map| = {boundary:.3f} (scores up to "
        f"{np.abs(dense_map).max():.3f}), same top class at {same_top} of {h * w} positions; a "
        "crop's convolutions see zero padding where the dense pass sees the image around it.")

    # 4. multi-scale testing
    log("")
    log(f"4. Multi-scale testing: posteriors averaged over image and mirror at each scale, "
        f"then over Q = {{{', '.join(map(str, SCALES))}}} (S = {TRAINING_SCALE})")
    images = tensor(image, device=device)
    posteriors = {q: multi_scale_scores(dense, images, [q], flip=True)[0] for q in SIZES}
    averaged = multi_scale_scores(dense, images, SCALES, flip=True)[0]
    winner = int(averaged.argmax())
    lines = [(q, int(p.argmax()), f"{p.max():.3f}", f"{p[winner]:.3f}")
             for q, p in posteriors.items()]
    lines.append(("Q average", winner, f"{averaged.max():.3f}", f"{averaged[winner]:.3f}"))
    single = softmax(maps[CROP][0, :, 0, 0])
    lines.append(("224, no flip", int(single.argmax()), f"{single.max():.3f}",
                  f"{single[winner]:.3f}"))
    for line in format_table(("scale", "top class", "P(top)", f"P(class {winner})"), lines):
        log(line)

    figure = _figure(image, maps[size][0, winner], winner,
                     {q: float(p[winner]) for q, p in posteriors.items()},
                     float(averaged[winner]), out)
    return {"agreement": agreement, "map_shapes": shapes,
            "cost": {"size": size, "positions": h * w, "dense_macs": int(dense_macs),
                     "crop_macs": int(crop_macs), "dense_seconds": dense_time,
                     "crop_seconds": crop_time, "crop_vs_dense_max_diff": boundary,
                     "same_top_class": same_top},
            "multi_scale": {"scales": list(SCALES), "winner": winner,
                            "posterior": averaged.tolist(),
                            "per_scale": {q: p.tolist() for q, p in posteriors.items()}},
            "figures": [str(figure)]}
