"""Credit notes: a paid invoice corrected, never voided, and the money given back."""
