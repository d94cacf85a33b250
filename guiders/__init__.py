"""Pure torch guidance math. Never imports comfy: every file here runs without a host.

Vocabulary (see convert.py): D = denoised prediction (x0), eps = predicted noise, sigma = noise level in
ComfyUI's VE parameterisation x = x0 + sigma * n. All reductions are per sample (dim 0 is the batch).

Every method implements the protocol of technique.py (conditions / reset / term); the formulas, defaults and
DECISIONs are collected in docs/method.md.
"""
