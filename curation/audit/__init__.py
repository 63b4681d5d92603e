"""Auditing the captioner: listening campaigns, statistics, the bias report, and reference audits from human labels."""
