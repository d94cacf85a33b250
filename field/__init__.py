"""Text-to-3D by score distillation: a latent voxel radiance field, its cameras and the SDS residual.

Pure torch (never imports comfy), like guiders/. The ComfyUI nodes build on:
    grid.LatentField     density + latent channels on an R^3 grid, rendered straight into latent space
    cameras              cameras in the view node's convention (azimuth 0 = front) and their rays
    sds                  the score-distillation residual in eps units, its weighting and D-SDS clipping
    mesh                 an isosurface of the density grid (surface nets)
"""
