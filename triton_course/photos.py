"""The course's photos (shipped inside scikit-image and scikit-learn) and the model's preprocessing."""

from __future__ import annotations

import io
import random
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .artifact import IMAGE_SIZE

# name -> (package, file inside it). Each ships inside an installed wheel (scikit-image, scikit-learn)
# and is read as a file, without importing the package: those pull in SciPy, which is slow to import
# and tied to one numpy generation.
PHOTOS = {
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}


def photo_path(name: str) -> Path:
    """Where a course photo's file is."""
    if name not in PHOTOS:
        raise KeyError(f"No course photo '{name}': choose from {', '.join(PHOTOS)}")
    package, file = PHOTOS[name]
    spec = find_spec(package)  # locates a top-level package without running it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Course photo '{name}' comes with the {package} package, which is not installed: "
                                "run `make setup` in the course folder.")
    return Path(next(iter(spec.submodule_search_locations))) / file


def photo(name: str) -> Image.Image:
    """One course photo as an RGB PIL image."""
    with Image.open(photo_path(name)) as image:
        return image.convert("RGB")


def photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in PHOTOS}


def save_jpeg(image: Image.Image, path: str | Path, quality: int = 92) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=quality)
    return path


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def open_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """A PIL image from a path, encoded bytes, or an image; says clearly when it is not one."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        with handle:
            image = Image.open(handle)
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"No such image file: {source}") from None
    except (OSError, SyntaxError) as exc:
        name = "the given bytes" if isinstance(source, bytes) else str(source)
        raise ValueError(f"{name} is not an image Pillow can decode ({exc}).") from None


def pixels(image: Image.Image | str | Path | bytes) -> np.ndarray:
    """The image as EfficientNet-Lite0 sees it, before normalisation: short side to 256 (bicubic),
    centre crop 224. Returns uint8 [224, 224, 3] (what the uint8 model variant takes)."""
    image = open_image(image)
    width, height = image.size
    scale = 256 / min(width, height)
    image = image.resize((max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale))),
                         Image.BICUBIC)
    width, height = image.size
    left, top = (width - IMAGE_SIZE) // 2, (height - IMAGE_SIZE) // 2
    return np.array(image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)), dtype=np.uint8)


def preprocess(image: Image.Image | str | Path | bytes) -> np.ndarray:
    """EfficientNet-Lite0's preprocessing: `pixels`, then (pixel - 127) / 128, channels first.
    Returns float32 [3, 224, 224]."""
    array = (pixels(image).astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def batch(images) -> np.ndarray:
    """Preprocess several images into one float32 batch [N, 3, 224, 224]."""
    return np.stack([preprocess(i) for i in images])


def _jpeg_again(image: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg_bytes(image, quality))).convert("RGB")


# What a photo goes through before it reaches a model: framing, light, focus, compression.
_AUGMENTATIONS = {
    "flip": lambda im, r: im.transpose(Image.FLIP_LEFT_RIGHT),
    "rotate": lambda im, r: im.rotate(r.uniform(-15, 15), resample=Image.BILINEAR, expand=False),
    "zoom": lambda im, r: _zoom(im, r.uniform(0.7, 0.9), r),
    "brightness": lambda im, r: ImageEnhance.Brightness(im).enhance(r.uniform(0.6, 1.4)),
    "contrast": lambda im, r: ImageEnhance.Contrast(im).enhance(r.uniform(0.6, 1.4)),
    "colour": lambda im, r: ImageEnhance.Color(im).enhance(r.uniform(0.3, 1.5)),
    "blur": lambda im, r: im.filter(ImageFilter.GaussianBlur(r.uniform(0.8, 2.0))),
    "jpeg": lambda im, r: _jpeg_again(im, r.randint(15, 40)),
}


def _zoom(image: Image.Image, keep: float, rng: random.Random) -> Image.Image:
    width, height = image.size
    w, h = int(width * keep), int(height * keep)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    return image.crop((left, top, left + w, top + h))


def augmented(images: dict[str, Image.Image], per_photo: int = 8, seed: int = 0) -> dict[str, Image.Image]:
    """`per_photo` altered versions of every image (flips, rotations, crops, light, blur, JPEG
    artefacts; two alterations each), named 'photo/N:alteration+alteration'. The same seed gives the
    same set, so accuracy comparisons can be repeated."""
    rng = random.Random(seed)
    names = sorted(_AUGMENTATIONS)
    result = {}
    for photo_name, image in images.items():
        for i in range(per_photo):
            chosen = rng.sample(names, 2)
            altered = image
            for name in chosen:
                altered = _AUGMENTATIONS[name](altered, rng)
            result[f"{photo_name}/{i}:{'+'.join(chosen)}"] = altered
    return result
