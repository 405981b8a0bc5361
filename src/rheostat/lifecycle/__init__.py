"""Building the default model repository: training, export, quantization, image preprocessing.

Import the submodules directly. `images` needs only PIL and numpy (the server uses it);
`digits`, `efficientnet`, `quantize` and `default_repository` need the `build` extra.
"""
