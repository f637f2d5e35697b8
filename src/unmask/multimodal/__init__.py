"""MMaDA's multimodal decoding: prompt layouts, text-to-image and image understanding."""
