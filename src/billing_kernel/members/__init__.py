"""Members of an org and their roles; seats are counted from them."""
