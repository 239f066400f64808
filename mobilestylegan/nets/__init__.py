"""Fixed feature networks: VGG16 (perceptual loss, LPIPS, precision/recall), LPIPS's perceptual distance, the FID
Inception, the reader of their published weight files, and resizing images to a common size."""
