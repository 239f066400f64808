"""Fixed feature networks: VGG16 (perceptual loss, LPIPS, precision/recall), the FID Inception, and the reader of
their published weight files."""
