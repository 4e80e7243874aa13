"""The test bed itself: a private Postfix delivers over SMTP and rejects unknown users."""

import smtplib

import pytest


def test_private_instance_delivers_and_rejects(postfix_instance):
    pf = postfix_instance
    pf.add_mailboxes("alice")
    pf.start()
    msgid = pf.send("alice@mbox.test")
    assert "hello" in pf.wait_for_delivery("alice", msgid)
    code, reply = pf.rcpt_code("nobody-here@mbox.test")
    assert code == 550, reply
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        pf.send("nobody-here@mbox.test")
    pid = pf.master_pid()
    pf.stop()
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
