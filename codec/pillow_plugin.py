"""Pillow plugin: ``Image.open("x.lic")`` and ``image.save("x.lic", quality=75)``.

Registered by ``import codec``.  Opening reads the header and walks the chunk
heads (plus the small ICC / EXIF / XMP chunks, for ``info``); it never reads the
streams and never imports torch.  Pixels are decoded on ``load()`` by the shared
default :class:`codec.Codec`.  Foreign data is left to the other plugins
(``UnidentifiedImageError`` if none claims it); a damaged or truncated file opens
but fails on ``load()`` with ``OSError``, as Pillow's own formats do, and ``verify()`` checks a
file's structure and every CRC without decoding (SyntaxError, as for a broken PNG); metadata
whose CRC fails is left out of ``info``.  With Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES``
set, ``load()`` decodes what is intact of a truncated or damaged file (``partial``), the
missing tiles gray.

Save options: ``quality`` (0–100, default 75), ``target_bpp``, ``target_size``
(bytes), ``icc_profile``, ``exif``, ``xmp`` (override the image's own), ``strip``, ``tile_size``
(pixels, a multiple of 64; default 1024), ``effort`` (0–3, default 0: see ``Codec.encode``).
"""
from __future__ import annotations


from PIL import Image, ImageFile

from . import container
from .errors import CodecError
from .tiling import DEFAULT_TILE

FORMAT = "LIC"
MIME = "image/x-lic"
EXTENSION = ".lic"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.SIGNATURE)] == container.SIGNATURE


class LicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "lic learned image codec"

    def _open(self) -> None:
        try:
            header, _ = container.read_header_from(self.fp)
        except CodecError as exc:
            raise SyntaxError(str(exc)) from None  # Pillow: not this format
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.lic_header = header
        self.info.update(quality=header.quality, weights=header.weights_sha256.hex())
        if header.model_name:  # files before format 1.2 name their model too
            self.info["model"] = header.model_name
        self._lic_error: CodecError | None = None
        self.fp.seek(0)
        try:
            _, table = container.read_chunk_table(self.fp)
        except CodecError as exc:  # damaged after the header: report it on load(), as Pillow does
            self._lic_error, table = exc, {}
        for kind, key in container.METADATA_CHUNKS:
            if kind in table:
                try:
                    self.info[key] = container.read_chunk(self.fp, kind, *table[kind])
                except CodecError as exc:  # damaged metadata is not handed out; load() fails on it
                    self._lic_error = self._lic_error or exc
        self.tile = []
        self._lic_decoded = False

    def verify(self) -> None:
        """Pillow's integrity check, without decoding: the chunk structure and every CRC, as
        ``decode`` checks them (SyntaxError, as Pillow's PNG plugin raises for a broken file)."""
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        if self._lic_error is None:
            self.fp.seek(0)
            try:
                container.unpack(self.fp.read())
            except CodecError as exc:
                self._lic_error = exc
        if self._exclusive_fp:
            self.fp.close()
        self.fp = None
        if self._lic_error is not None:
            raise SyntaxError(f"broken .lic file: {self._lic_error}")

    def load(self):
        if not self._lic_decoded and self.fp is not None:
            partial = bool(ImageFile.LOAD_TRUNCATED_IMAGES)  # Pillow's switch: what is intact, the rest gray
            if self._lic_error is not None and not partial:
                raise OSError(str(self._lic_error))
            from .api import default_codec

            self.fp.seek(0)
            try:
                image = default_codec().decode(self.fp.read(), partial=partial)
            except CodecError as exc:
                raise OSError(str(exc)) from None
            self._lic_decoded = True
            if self._exclusive_fp:
                self.fp.close()
            self.im, self.tile = image.im, []  # adopt the decoded pixels: no raw copy (a 179 MP image is 716 MB)
        return super().load()


def _save(im: Image.Image, fp, filename) -> None:
    from .api import default_codec

    opts = im.encoderinfo
    source = im
    overrides = {key: opts[key] for _, key in container.METADATA_CHUNKS if opts.get(key) is not None}
    if overrides:
        if isinstance(overrides.get("exif"), Image.Exif):
            overrides["exif"] = overrides["exif"].tobytes()
        if isinstance(overrides.get("xmp"), str):  # an XMP packet is text: UTF-8, as XMP itself says
            overrides["xmp"] = overrides["xmp"].encode("utf-8")
        for key, value in overrides.items():  # what the container stores verbatim: bytes only
            if not isinstance(value, (bytes, bytearray)):
                raise ValueError(f"{key} must be bytes{' or Image.Exif' if key == 'exif' else ''}, "
                                 f"got {type(value).__name__}")
        source = im.copy()
        source.info.update(overrides)
    try:
        data = default_codec().encode(source, opts.get("quality", 75), target_bpp=opts.get("target_bpp"),
                                      target_size=opts.get("target_size"), strip=bool(opts.get("strip")),
                                      tile=opts.get("tile_size", DEFAULT_TILE), effort=opts.get("effort", 0))
    except CodecError as exc:
        raise ValueError(str(exc)) from None
    fp.write(data)


Image.register_open(FORMAT, LicImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)
