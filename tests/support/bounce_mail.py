"""Bounce and complaint messages in the shapes real senders use (RFC 3464 / RFC 5965).

Written from RFC 3464's structure in the styles of Postfix, Exim, Exchange and Gmail, and an
ARF report as Yahoo/Outlook feedback loops send them. Used by unit tests and to drive the
receiver over SMTP.
"""

from __future__ import annotations

ORIGINAL_HEADERS = """\
Return-Path: <{return_path}>
Message-ID: {message_id}
Date: Mon, 30 Nov 2026 18:00:00 +0000
From: Notifier <notifier@example.com>
To: {recipient}
Subject: Welcome
"""


def postfix_dsn(
    recipient: str,
    *,
    message_id: str = "<orig-1@example.com>",
    status: str = "5.1.1",
    action: str = "failed",
    to: str = "bounces@bounces.example.com",
    dsn_id: str = "<20261130180001.ABC123@mail.example.com>",
    return_path: str = "bounces@bounces.example.com",
) -> bytes:
    code = "550" if status.startswith("5") else "452"
    return f"""\
Return-Path: <>
Message-ID: {dsn_id}
Date: Mon, 30 Nov 2026 18:00:01 +0000 (UTC)
From: MAILER-DAEMON@mail.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4A1B2C3D.1700000000/mail.example.com"

This is a MIME-encapsulated message.

--4A1B2C3D.1700000000/mail.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net[192.0.2.25] said: {code} {status}
    <{recipient}>: Recipient address rejected (in reply to RCPT TO command)

--4A1B2C3D.1700000000/mail.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.com
X-Postfix-Queue-ID: 4A1B2C3D
X-Postfix-Sender: rfc822; {return_path}
Arrival-Date: Mon, 30 Nov 2026 18:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {code} {status} <{recipient}>: Recipient address
    rejected

--4A1B2C3D.1700000000/mail.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(return_path=return_path, message_id=message_id, recipient=recipient)}
--4A1B2C3D.1700000000/mail.example.com--
""".replace("\n", "\r\n").encode()


def gmail_dsn(recipient: str, *, message_id: str = "<orig-2@example.com>", to: str) -> bytes:
    return f"""\
Return-Path: <>
Message-ID: <5f1c2a.gmail.dsn.7@mx.google.com>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {to}
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000gmail"; report-type=delivery-status

--000000000000gmail
Content-Type: multipart/related; boundary="000000000000inner"

--000000000000inner
Content-Type: multipart/alternative; boundary="000000000000alt"

--000000000000alt
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {recipient} because the address couldn't be found, or is
unable to receive mail.

--000000000000alt--
--000000000000inner--
--000000000000gmail
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; notifier@example.com
Arrival-Date: Mon, 30 Nov 2026 10:00:00 -0800 (PST)
X-Original-Message-ID: {message_id}

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2607:f8b0::1b, the server for the domain
 gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser a1si2 - gsmtp
Last-Attempt-Date: Mon, 30 Nov 2026 10:00:01 -0800 (PST)

--000000000000gmail
Content-Type: message/rfc822

{ORIGINAL_HEADERS.format(return_path=to, message_id=message_id, recipient=recipient)}
Hello
--000000000000gmail--
""".replace("\n", "\r\n").encode()


def exchange_dsn(recipient: str, *, message_id: str = "<orig-3@example.com>", to: str) -> bytes:
    return f"""\
From: postmaster@contoso.com
To: {to}
Date: Mon, 30 Nov 2026 18:00:02 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="a1b2c3d4-exchange"
Message-ID: <a1b2c3d4-0000-exchange@contoso.com>
Subject: Undeliverable: Welcome
Auto-Submitted: auto-replied

--a1b2c3d4-exchange
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="e5f6-alt"

--e5f6-alt
Content-Type: text/plain; charset="us-ascii"

Your message to {recipient} couldn't be delivered.
The email address wasn't found at the destination domain.

--e5f6-alt--

--a1b2c3d4-exchange
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.example.com
Arrival-Date: Mon, 30 Nov 2026 18:00:00 +0000

Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP
 address lookup
X-Display-Name: {recipient}

--a1b2c3d4-exchange
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(return_path=to, message_id=message_id, recipient=recipient)}
--a1b2c3d4-exchange--
""".replace("\n", "\r\n").encode()


def exim_plain_bounce(recipient: str, *, to: str) -> bytes:
    """Exim's classic plain-text bounce (no delivery-status part): flufl.bounce's detectors."""
    return f"""\
Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: {to}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1abcde-0001-Ab@mx.example.org>
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied
Date: Mon, 30 Nov 2026 18:00:03 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

Message-ID: <orig-4@example.com>
From: Notifier <notifier@example.com>
To: {recipient}
Subject: Welcome

Hello
""".replace("\n", "\r\n").encode()


def arf_report(
    recipient: str | None,
    *,
    to: str,
    return_path: str,
    message_id: str = "<orig-5@example.com>",
    report_id: str = "<arf-1@feedback.example.net>",
) -> bytes:
    rcpt_line = f"Original-Rcpt-To: {recipient}\n" if recipient else ""
    shown_to = recipient or "redacted@example.net"
    return f"""\
From: Feedback Loop <feedbackloop@feedback.example.net>
To: {to}
Subject: FW: Welcome
Message-ID: {report_id}
Date: Mon, 30 Nov 2026 18:10:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="arf_boundary"

--arf_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP 192.0.2.1 on
Mon, 30 Nov 2026 18:00:00 +0000.

--arf_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{return_path}>
{rcpt_line}Arrival-Date: Mon, 30 Nov 2026 18:00:00 +0000
Source-IP: 192.0.2.1
Reported-Domain: example.com

--arf_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{ORIGINAL_HEADERS.format(return_path=return_path, message_id=message_id, recipient=shown_to)}
Hello
--arf_boundary--
""".replace("\n", "\r\n").encode()


def out_of_office(*, to: str) -> bytes:
    return f"""\
From: Someone <someone@example.net>
To: {to}
Subject: Out of office
Message-ID: <ooo-1@example.net>
Auto-Submitted: auto-replied

I am away until Monday.
""".replace("\n", "\r\n").encode()
