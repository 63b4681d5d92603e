"""The built-in demo corpus: synthetic audio with known truth, captioned by a simulated captioner with declared biases."""
