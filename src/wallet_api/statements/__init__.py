"""A wallet's statement of a period: its opening balance, every entry, its closing balance."""
