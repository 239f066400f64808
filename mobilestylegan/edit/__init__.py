"""Real images into a generator's latent space (projection) and semantic edits of latents."""
