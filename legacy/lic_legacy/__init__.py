"""Earlier lic releases' weights, decode-only: install beside lic and the files they wrote decode.

Data only; lic finds this package's ``weights`` folder without importing it
(:func:`codec.shipped.legacy_dir`).  Each release moves its oldest former default here
(``python -m codec.training.retire NAME --to-legacy``), so that the light install stays
inside its size budget while every file lic ever wrote stays decodable.
"""
