"""Build transferkit's embedded photo sample: ten of scikit-image's free photos, downscaled.

Writes one JPEG per class into ``transferkit/data/sample/photos/`` (the short side scaled to ``--side`` pixels)
and a ``LICENSE`` naming each photo's source and licence as scikit-image's docstrings give them (public domain,
CC0, or no known copyright restrictions). ``transferkit.data.embedded.load_photos`` cuts the photos into tiles:
training tiles from the left half of each photo, validation from the next 20 %, test from the rest, so no pixel
is in two splits.

Example:
    pip install scikit-image && python data_scripts/build_photos.py
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "transferkit" / "data" / "sample" / "photos"

# class name -> (scikit-image function, licence as scikit-image's docstring states it)
PHOTOS = {
    "astronaut": ("astronaut", "NASA Great Images (Eileen Collins), no known copyright restrictions, public domain"),
    "brick": ("brick", "CC0, CC0Textures Bricks25"),
    "cat": ("chelsea", "CC0, photographer Stefan van der Walt"),
    "coffee": ("coffee", "CC0, photographer Rachel Michetti"),
    "galaxies": ("hubble_deep_field", "NASA/ESA Hubble eXtreme Deep Field, public domain"),
    "grass": ("grass", "DeviantArt (linolafett, Grass 01), CC0"),
    "gravel": ("gravel", "CC0, CC0Textures Gravel04"),
    "retina": ("retina", "Wikimedia Commons (Mikael Haggstrom), CC0 1.0 Universal"),
    "rocket": ("rocket", "SpaceX (DSCOVR on Falcon 9), released into the public domain"),
    "tissue": ("immunohistochemistry", "Center for Microscopy And Molecular Imaging, no known copyright restrictions"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=384, help="short side of each stored photo, in pixels")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from skimage import data as skdata

    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["The photos in this folder are scikit-image's sample images (https://scikit-image.org,",
             "skimage.data), downscaled by data_scripts/build_photos.py; each is CC0, in the public domain or",
             "has no known copyright restrictions:", ""]
    for name, (function, licence) in PHOTOS.items():
        image = np.asarray(getattr(skdata, function)())
        image = (image * 255).astype(np.uint8) if image.dtype != np.uint8 else image
        photo = Image.fromarray(image[..., :3] if image.ndim == 3 else image)
        scale = args.side / min(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
        photo.save(args.out / f"{name}.jpg", quality=args.quality)
        lines.append(f"{name}.jpg: skimage.data.{function}(); {licence}")
    (args.out / "LICENSE").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(PHOTOS)} photos to {args.out}")


if __name__ == "__main__":
    main()
