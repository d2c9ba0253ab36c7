"""mailbot: read and send Outlook.com / Microsoft 365 mail over IMAP and SMTP with OAuth 2.

The package behind the ``mailbot`` command. Its modules are its layers (see README →
Development): ``cli`` on top, then ``commands``, then ``signin``/``net``/``mail``/``store``,
then the pure ``wire`` formats and ``errors``.
"""

__version__ = "0.2.0"
