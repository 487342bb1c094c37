"""Orgs: who they are, the other names they go by, and their admission (created on first
touch, their billing state seeded on the default plan, in trial). How a subscription
changes after that is `subscriptions/`."""
