//! Realistic generated content: ordinary mail, backup reports, invoices and the demo world.
//! Everything is seeded, so the same inputs give the same messages (ids and dates relative to
//! the build time aside).

use time::{Duration, OffsetDateTime};

use crate::ids::fnv1a;
use crate::world::{DEFAULT_TENANT, Mailbox, NewMessage, World};

const PEOPLE: &[(&str, &str)] = &[
    ("Adele Vance", "adelev@contoso.com"),
    ("Alex Wilber", "alexw@contoso.com"),
    ("Megan Bowen", "meganb@contoso.com"),
    ("Lee Gu", "leeg@contoso.com"),
    ("Nestor Wilke", "nestorw@contoso.com"),
    ("Patti Fernandez", "pattif@contoso.com"),
    ("IT Helpdesk", "helpdesk@contoso.com"),
    ("Microsoft 365 Message center", "o365mc@microsoft.com"),
    ("Northwind Traders", "orders@northwindtraders.com"),
    ("Woodgrove Bank", "statements@woodgrovebank.com"),
    ("Tailspin Toys", "news@tailspintoys.com"),
    ("Fabrikam Support", "support@fabrikam.com"),
];

const SUBJECTS: &[&str] = &[
    "Weekly sync notes",
    "Re: Q{n} budget review",
    "Your order #{n} has shipped",
    "Password expiry notice",
    "Lunch on Friday?",
    "FW: Updated travel policy",
    "Meeting minutes - project Falcon",
    "Your monthly statement is available",
    "Action required: confirm your attendance",
    "Re: Re: contract renewal {n}",
    "Ticket #{n} has been resolved",
    "Major update from Message center",
    "Holiday schedule",
    "Draft proposal for review",
];

const ATTACHMENTS: &[(&str, &str, usize)] = &[
    ("minutes.pdf", "application/pdf", 48_000),
    (
        "figures.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        22_000,
    ),
    ("photo.jpg", "image/jpeg", 96_000),
    (
        "agenda.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        18_000,
    ),
];

fn rng_for(parts: &[&[u8]]) -> fastrand::Rng {
    fastrand::Rng::with_seed(fnv1a(parts))
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.usize(..items.len()))
    }
}

fn ago(now: OffsetDateTime, seconds: i64) -> OffsetDateTime {
    now.checked_sub(Duration::seconds(seconds)).unwrap_or(now)
}

/// `n` ordinary messages for `Mailbox::messages`, spread over the last four weeks.
pub(crate) fn generated_messages(
    address: &str,
    folder: &str,
    n: usize,
    now: OffsetDateTime,
) -> Vec<NewMessage> {
    let mut rng = rng_for(&[
        address.as_bytes(),
        folder.as_bytes(),
        &(n as u64).to_le_bytes(),
    ]);
    (0..n)
        .map(|i| {
            let (name, from) = pick(&mut rng, PEOPLE).copied().unwrap_or(("A", "a@b.c"));
            let subject = pick(&mut rng, SUBJECTS)
                .copied()
                .unwrap_or("Hello")
                .replace("{n}", &rng.u32(1000..99_999).to_string());
            let received = ago(now, rng.i64(60..28 * 86_400));
            let mut m = NewMessage::new(&subject)
                .from(name, from)
                .received(received)
                .is_read(rng.u8(..100) < 60)
                .body_text(&format!(
                    "Hi,\n\n{}\n\nThanks,\n{}\n",
                    body_line(&mut rng),
                    name.split(' ').next().unwrap_or(name)
                ));
            if rng.u8(..100) < 25
                && let Some((file, ct, size)) = pick(&mut rng, ATTACHMENTS)
            {
                m = m.attachment(file, ct, size + i % 997);
            }
            m
        })
        .collect()
}

fn body_line(rng: &mut fastrand::Rng) -> &'static str {
    const LINES: &[&str] = &[
        "Please see the notes below and let me know if I missed anything.",
        "Attached is the latest version; comments welcome before Thursday.",
        "Can we move this to next week? The team is still waiting on figures.",
        "This is a reminder that the change takes effect on the first of next month.",
        "Thanks for your order. Tracking details are available in your account.",
    ];
    pick(rng, LINES).copied().unwrap_or("Hello.")
}

const HOSTS: &[&str] = &[
    "SRV-FS01",
    "SRV-SQL02",
    "SRV-DC01",
    "SRV-APP03",
    "WS-ACCT-04",
    "SRV-EXCH01",
];

/// One backup report from a Veeam-, Acronis- or Datto-like sender.
fn backup_report(rng: &mut fastrand::Rng, received: OffsetDateTime) -> NewMessage {
    let host = pick(rng, HOSTS).copied().unwrap_or("SRV-FS01");
    let roll = rng.u8(..100);
    let (status, word) = match roll {
        0..=79 => ("Success", "succeeded"),
        80..=93 => ("Warning", "completed with warnings"),
        _ => ("Failed", "failed"),
    };
    let size = rng.usize(6_000..60_000);
    match rng.u8(..3) {
        0 => {
            let job = format!("Nightly-{}", host.trim_start_matches("SRV-"));
            let machines = rng.u8(1..9);
            let warnings = if status == "Warning" { rng.u8(1..4) } else { 0 };
            NewMessage::new(&format!(
                "[{status}] {job} ({machines} machines) {warnings} warnings"
            ))
            .from("Veeam Backup & Replication", "veeam@backup.contoso.com")
            .body_text(&format!(
                "Backup job: {job}\n\nStatus: {status}\nProcessed machines: {machines}\nWarnings: {warnings}\n\nThe detailed session report is attached."
            ))
            .attachment(&format!("{job}_report.html"), "text/html", size)
        }
        1 => NewMessage::new(&format!("Acronis Cyber Protect: backup {word} for '{host}'"))
            .from("Acronis Cyber Protect Cloud", "noreply@acronis-backup.com")
            .body_text(&format!(
                "The backup plan 'Entire machine to cloud storage' {word} for {host}.\n\nSee the attached report for details."
            ))
            .attachment(&format!("{host}-backup-report.pdf"), "application/pdf", size),
        _ => NewMessage::new(&format!(
            "Datto SIRIS: screenshot verification {} for {host}",
            if status == "Failed" { "failed" } else { "succeeded" }
        ))
        .from("Datto Alerts", "alerts@datto.com")
        .body_text(&format!(
            "Agent: {host}\nBackup result: {status}\n\nThe screenshot verification report is attached."
        ))
        .attachment(&format!("screenshot-{host}.pdf"), "application/pdf", size),
    }
    .received(received)
    .is_read(false)
}

const VENDORS: &[(&str, &str, &str)] = &[
    (
        "Fabrikam, Inc. Accounts Receivable",
        "ar@fabrikam.com",
        "Fabrikam, Inc.",
    ),
    (
        "Northwind Traders Billing",
        "billing@northwindtraders.com",
        "Northwind Traders",
    ),
    (
        "Adatum Corporation",
        "invoices@adatum.com",
        "Adatum Corporation",
    ),
    ("Litware, Inc.", "accounts@litwareinc.com", "Litware, Inc."),
    ("Proseware Cloud", "billing@proseware.com", "Proseware"),
];

fn invoice(rng: &mut fastrand::Rng, number: u32, received: OffsetDateTime) -> NewMessage {
    let (sender, address, company) =
        pick(rng, VENDORS)
            .copied()
            .unwrap_or(("Fabrikam", "ar@fabrikam.com", "Fabrikam"));
    let amount = f64::from(rng.u32(12_000..980_000)) / 100.0;
    let id = format!("INV-2025-{number:05}");
    NewMessage::new(&format!("Invoice {id} from {company}"))
        .from(sender, address)
        .body_text(&format!(
            "Dear customer,\n\nPlease find attached invoice {id} for EUR {amount:.2}, due in 30 days.\n\nBest regards,\n{company}"
        ))
        .attachment(&format!("{id}.pdf"), "application/pdf", rng.usize(40_000..200_000))
        .received(received)
}

/// The demo world (see [`World::demo`]).
pub(crate) fn demo_world() -> World {
    let now = OffsetDateTime::now_utc();
    let mut rng = fastrand::Rng::with_seed(2025);

    let mut reports = Mailbox::new("reports@contoso.com")
        .display_name("Backup Reports")
        .folder("Inbox/Backup Reports/Archive 2025");
    for i in 0..200i64 {
        // Roughly five a day over six weeks, newest first.
        let received = ago(now, i * 5 * 3600 + rng.i64(0..3600));
        reports = reports.message("Inbox/Backup Reports", backup_report(&mut rng, received));
    }
    let archive_start = OffsetDateTime::new_utc(
        time::Date::from_calendar_date(2025, time::Month::March, 31).unwrap_or(time::Date::MIN),
        time::Time::MIDNIGHT,
    );
    for i in 0..30i64 {
        let received = ago(archive_start, i * 2 * 86_400 + rng.i64(0..86_400));
        reports = reports.message(
            "Inbox/Backup Reports/Archive 2025",
            backup_report(&mut rng, received).is_read(true),
        );
    }
    reports = reports.messages("Inbox", 6);

    let mut invoices = Mailbox::new("invoices@contoso.com")
        .display_name("Invoices")
        .folder("Inbox/Processed");
    for i in 0..100u32 {
        let received = ago(now, i64::from(i) * 9 * 3600 + rng.i64(0..7200));
        invoices = invoices.message("Inbox/Invoices", invoice(&mut rng, 1000 + i, received));
    }
    invoices = invoices.messages("Inbox", 5);

    World::default_test()
        .mailbox(DEFAULT_TENANT, reports)
        .mailbox(DEFAULT_TENANT, invoices)
}
