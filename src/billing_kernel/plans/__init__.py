"""Plans: what each includes of every metric, its monthly price and overage prices, the
default plan for new orgs. Prices and plan terms belong here."""
