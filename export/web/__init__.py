"""The web export's browser side: the seeded latents in JavaScript (``seeded_z.js``) and the local server."""
