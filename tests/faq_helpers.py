"""Small FAQ fixtures shared by the tests/test_faq_*.py files."""
from __future__ import annotations

SHOP_FAQ_YAML = """\
- questions:
    - What are your opening hours?
    - When are you open?
    - What time do you open?
    - Are you open on weekends?
    - What time do you close today?
  answer: We are open Monday to Friday, 9:00-18:00.
  tags: [hours]
- questions:
    - How long does shipping take?
    - When will my package arrive?
    - How long is delivery?
    - How many days does delivery take?
    - What is the delivery time?
  answer: Standard delivery takes 2-5 business days.
  tags: [shipping]
- questions:
    - How do I return an item?
    - Can I send my order back?
    - What is your return policy?
    - How can I return something I bought?
    - I want to return a product
  answer: Items can be returned within 30 days of delivery.
- questions:
    - How do I reset my password?
    - I forgot my password
    - I can't log in to my account
    - Password reset is not working
    - How can I change my password?
  answer: Use "Forgot password" on the login page; the link is valid for one hour.
"""

SHOP_FAQ_CSV = """\
question,answer,tags
What are your opening hours?,"We are open Monday to Friday, 9:00-18:00.",hours
When are you open?,"We are open Monday to Friday, 9:00-18:00.",hours
How long does shipping take?,Standard delivery takes 2-5 business days.,shipping;delivery
When will my package arrive?,Standard delivery takes 2-5 business days.,shipping
"Can I pay by card, or only PayPal?","We accept cards, PayPal and bank transfer.",
"""
