//! Wire codecs: BOLT #1 and LCP v0.2 messages.
