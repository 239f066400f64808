"""The student network: Haar wavelets, modulated depthwise-separable convs, IDWT upsampling, blocks, the synthesis
network and generator, its lean inference form, MAC counting and seeded latents."""
