"""Change events out: the catalog's log as the outbox, rules from NOTIFICATIONS, delivery to webhooks, EventBridge, MNS."""
