"""mdm: tri-modal masked diffusion models (text, image-text, audio-text) in JAX/Flax.

Importing the package is cheap and JAX-free; the heavy modules (model, trainer, sampling) are
imported on demand so that `analysis/` and `launch/` can read the run-directory contract
(`mdm.run_contract`) on a laptop with no accelerator.
"""

__version__ = "0.1.0"
