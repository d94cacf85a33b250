"""Developer tools that are not part of the node pack (left out of the Registry package by .comfyignore): the
analytic Gaussian-mixture lab that validates the math in guiders/ without model weights."""
