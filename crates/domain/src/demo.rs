//! Demo data: a seeded, deterministic set of touchpoint events with believable, non-linear
//! journeys, so a newcomer sees a real scribble before sending a single event, and tests and
//! benchmarks run on realistic input.
//!
//! Every customer follows one of the [`PERSONAS`]: a weighted walk over touchpoints with its own
//! channel mix, pace, loops and drop-off. Identities behave as they do in the field: customers
//! start anonymous on one device, some identify later (a form, a chat, a login, checkout), some
//! come back on a second device that gets identified too, email reaches only known customers and
//! names them by user id alone, a few live in the CRM under another id that an alias joins, and
//! many never identify at all. Journeys that are still going when the window closes are cut
//! there, as in a real export.
//!
//! Everything derives from the seed and `start_ms`: no clock, no global randomness. Each customer
//! draws from a generator of its own, so customer *n* is the same whatever the customer count.

use std::ops::Range;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use uuid::Builder;

use crate::event::{default_channel, default_direct, Body, Event, Who};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// A walk stops here even when its persona would go on, so no single customer dominates.
const MAX_TOUCHES: usize = 60;
/// Desktop and phone. Anonymous ids are numbered `customer * DEVICES + device`.
const DEVICES: usize = 2;
/// Chance that any one break between sessions turns into a month of silence.
const VANISH: f64 = 0.015;
/// Breaks between sessions are at least this long, over the usual 30-minute session gap.
const MIN_BREAK_MS: i64 = 40 * MINUTE_MS;

/// The personas demo customers follow, as the `persona` trait on their identify events.
pub const PERSONAS: [&str; 5] = [
    "researcher",
    "impulse_buyer",
    "newsletter_loyalist",
    "support_heavy",
    "window_shopper",
];

/// What to generate. The default is 10,000 customers over the 60 days from
/// 2026-01-01T00:00:00Z with seed 7: about 100,000 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// How many customers to simulate. Each has at least one touchpoint.
    pub customers: usize,
    /// The same seed (and the same other options) gives the same events, ids included.
    pub seed: u64,
    /// Start of the window, epoch milliseconds. Every event lies in `[start_ms, start_ms + days)`.
    pub start_ms: i64,
    /// Length of the window in days; 0 gives no events.
    pub days: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            customers: 10_000,
            seed: 7,
            start_ms: 1_767_225_600_000,
            days: 60,
        }
    }
}

/// Generates the demo events, sorted by event time, with `received_ms` equal to `at_ms`. Ids
/// follow the scheme `anon-<n>` (anonymous), `cust-<n>` (user) and `crm-<n>` (CRM user ids,
/// joined to `cust-<n>` by alias events). The result would pass the collector's validation.
pub fn generate(options: &DemoOptions) -> Vec<Event> {
    let mut events = Vec::with_capacity(options.customers.saturating_mul(12));
    if options.days == 0 {
        return events;
    }
    let end_ms = options.start_ms + i64::from(options.days) * DAY_MS;
    let base = mix(options.seed);
    for number in 0..options.customers {
        let rng = SmallRng::seed_from_u64(base.wrapping_add(number as u64));
        Customer::new(number, rng, options.start_ms, end_ms, &mut events).live();
    }
    // Stable, so events at the same millisecond keep their causal order (identify first).
    events.sort_by_key(|event| event.at_ms);
    events
}

/// SplitMix64's finalizer: spreads neighbouring seeds far apart, so two seeds never share
/// customers' generators.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touchpoint {
    AdImpression,
    AdClick,
    SocialPost,
    ReviewRead,
    SiteVisit,
    EmailOpen,
    EmailClick,
    ChatStarted,
    FormSubmit,
    StoreVisit,
    Purchase,
    SupportTicket,
    ChatSupport,
    NpsResponse,
    ReviewWritten,
    Referral,
}

use Touchpoint::*;

impl Touchpoint {
    fn name(self) -> &'static str {
        match self {
            AdImpression => "ad_impression",
            AdClick => "ad_click",
            SocialPost => "social_post",
            ReviewRead => "review_read",
            SiteVisit => "site_visit",
            EmailOpen => "email_open",
            EmailClick => "email_click",
            ChatStarted => "chat_started",
            FormSubmit => "form_submit",
            StoreVisit => "store_visit",
            Purchase => "purchase",
            SupportTicket => "support_ticket",
            ChatSupport => "chat_support",
            NpsResponse => "nps_response",
            ReviewWritten => "review_written",
            Referral => "referral",
        }
    }

    /// Touchpoints only a known customer can have: the brand must know whom to mail or serve.
    fn needs_user(self) -> bool {
        matches!(
            self,
            EmailOpen | EmailClick | SupportTicket | NpsResponse | ReviewWritten | Referral
        )
    }

    /// The channel, from the name unless the context says otherwise.
    fn channel(self, previous: Option<Touchpoint>) -> &'static str {
        match (self, previous) {
            (Purchase, Some(StoreVisit)) => "store",
            (ChatSupport, _) => "support",
            (NpsResponse, _) => "email",
            (Referral, _) => "referral",
            _ => default_channel(self.name()),
        }
    }
}

/// Chance that `to` follows `from` within the same session rather than after a break.
fn session_link(from: Touchpoint, to: Touchpoint) -> f64 {
    match (from, to) {
        (AdClick | EmailClick, SiteVisit) | (StoreVisit, Purchase) => 1.0,
        (AdImpression, AdClick) | (EmailOpen, EmailClick) => 0.85,
        (
            SiteVisit | ReviewRead | SocialPost | ChatStarted | FormSubmit | ChatSupport | Purchase,
            SiteVisit,
        )
        | (SiteVisit, ReviewRead | ChatStarted | FormSubmit | Purchase | ChatSupport)
        | (ChatStarted, FormSubmit | Purchase)
        | (SupportTicket, ChatSupport) => 0.7,
        _ => 0.0,
    }
}

/// Where a walk may go from one touchpoint: `None` is leaving for good, weights are relative.
type Moves = &'static [(Option<Touchpoint>, u32)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persona {
    Researcher,
    ImpulseBuyer,
    NewsletterLoyalist,
    SupportHeavy,
    WindowShopper,
}

/// How a persona behaves apart from its walk.
struct Behaviour {
    /// Relative share of customers.
    share: u32,
    /// Already a customer when the window opens (subscriber, account holder): has a user id
    /// from the start, though no device is logged in yet.
    known: bool,
    /// Mean break between sessions, hours.
    break_hours: f64,
    /// Chance a new session happens on the other device.
    switch_device: f64,
    /// Chance a known customer logs in on a site visit from a device not yet identified.
    login: f64,
    /// Chance the customer also lives in the CRM under an id of its own.
    crm: f64,
    /// Order value range, euros.
    basket: (f64, f64),
    /// NPS score range, inclusive.
    nps: (u32, u32),
    /// Touchpoints a customer needs before it is ready to buy; earlier purchases turn into more
    /// research.
    patience: Range<usize>,
}

impl Persona {
    const ALL: [Persona; 5] = [
        Persona::Researcher,
        Persona::ImpulseBuyer,
        Persona::NewsletterLoyalist,
        Persona::SupportHeavy,
        Persona::WindowShopper,
    ];

    fn name(self) -> &'static str {
        PERSONAS[self as usize]
    }

    fn behaviour(self) -> &'static Behaviour {
        match self {
            Persona::Researcher => &Behaviour {
                share: 36,
                known: false,
                break_hours: 36.0,
                switch_device: 0.25,
                login: 0.3,
                crm: 0.03,
                basket: (150.0, 900.0),
                nps: (5, 10),
                patience: 5..20,
            },
            Persona::ImpulseBuyer => &Behaviour {
                share: 10,
                known: false,
                break_hours: 20.0,
                switch_device: 0.05,
                login: 0.2,
                crm: 0.03,
                basket: (15.0, 120.0),
                nps: (6, 10),
                patience: 0..1,
            },
            Persona::NewsletterLoyalist => &Behaviour {
                share: 14,
                known: true,
                break_hours: 36.0,
                switch_device: 0.3,
                login: 0.4,
                crm: 0.1,
                basket: (30.0, 220.0),
                nps: (8, 10),
                patience: 0..1,
            },
            Persona::SupportHeavy => &Behaviour {
                share: 8,
                known: true,
                break_hours: 40.0,
                switch_device: 0.15,
                login: 0.5,
                crm: 0.5,
                basket: (50.0, 400.0),
                nps: (0, 8),
                patience: 0..1,
            },
            Persona::WindowShopper => &Behaviour {
                share: 30,
                known: false,
                break_hours: 72.0,
                switch_device: 0.1,
                login: 0.2,
                crm: 0.0,
                basket: (10.0, 60.0),
                nps: (5, 9),
                patience: 0..1,
            },
        }
    }

    fn entry(self) -> &'static [(Touchpoint, u32)] {
        match self {
            Persona::Researcher => &[
                (AdImpression, 3),
                (ReviewRead, 3),
                (SocialPost, 2),
                (SiteVisit, 2),
            ],
            Persona::ImpulseBuyer => &[(AdImpression, 3), (AdClick, 4), (SocialPost, 2)],
            Persona::NewsletterLoyalist => &[(EmailOpen, 8), (SiteVisit, 1), (StoreVisit, 1)],
            Persona::SupportHeavy => &[(Purchase, 4), (SupportTicket, 5), (SiteVisit, 1)],
            Persona::WindowShopper => &[
                (SiteVisit, 4),
                (SocialPost, 2),
                (AdImpression, 2),
                (StoreVisit, 1),
            ],
        }
    }

    fn moves(self, from: Touchpoint) -> Moves {
        match (self, from) {
            (_, AdClick | EmailClick) => &[(Some(SiteVisit), 1)],

            // Long cycles, loops between the site, reviews and email; converts late or never.
            (Persona::Researcher, AdImpression) => &[
                (None, 1),
                (Some(AdClick), 8),
                (Some(ReviewRead), 4),
                (Some(AdImpression), 2),
                (Some(SiteVisit), 2),
            ],
            (Persona::Researcher, SocialPost) => &[
                (None, 1),
                (Some(SiteVisit), 6),
                (Some(ReviewRead), 6),
                (Some(SocialPost), 2),
            ],
            (Persona::Researcher, ReviewRead) => &[
                (None, 1),
                (Some(SiteVisit), 12),
                (Some(ReviewRead), 6),
                (Some(EmailOpen), 4),
                (Some(SocialPost), 2),
            ],
            (Persona::Researcher, SiteVisit) => &[
                (None, 1),
                (Some(SiteVisit), 14),
                (Some(ReviewRead), 8),
                (Some(EmailOpen), 6),
                (Some(ChatStarted), 4),
                (Some(FormSubmit), 2),
                (Some(AdImpression), 2),
                (Some(StoreVisit), 2),
                (Some(Purchase), 2),
            ],
            (Persona::Researcher, EmailOpen) => &[
                (None, 1),
                (Some(EmailClick), 8),
                (Some(ReviewRead), 4),
                (Some(EmailOpen), 2),
                (Some(SiteVisit), 2),
            ],
            (Persona::Researcher, ChatStarted) => &[
                (None, 1),
                (Some(SiteVisit), 8),
                (Some(FormSubmit), 4),
                (Some(Purchase), 2),
            ],
            (Persona::Researcher, FormSubmit) => &[
                (None, 1),
                (Some(EmailOpen), 8),
                (Some(SiteVisit), 4),
                (Some(ChatStarted), 2),
            ],
            (Persona::Researcher, StoreVisit) => &[
                (None, 1),
                (Some(SiteVisit), 6),
                (Some(Purchase), 4),
                (Some(ReviewRead), 2),
            ],
            (Persona::Researcher, Purchase) => &[
                (None, 4),
                (Some(EmailOpen), 6),
                (Some(SupportTicket), 2),
                (Some(ReviewWritten), 2),
                (Some(SiteVisit), 2),
            ],

            // Ad, site, purchase, mostly within the hour.
            (Persona::ImpulseBuyer, AdImpression) => {
                &[(None, 2), (Some(AdClick), 5), (Some(AdImpression), 1)]
            }
            (Persona::ImpulseBuyer, SocialPost) => {
                &[(None, 2), (Some(SiteVisit), 4), (Some(AdClick), 1)]
            }
            (Persona::ImpulseBuyer, SiteVisit) => &[
                (None, 3),
                (Some(Purchase), 6),
                (Some(SiteVisit), 3),
                (Some(ChatStarted), 1),
            ],
            (Persona::ImpulseBuyer, ChatStarted) => {
                &[(None, 1), (Some(Purchase), 3), (Some(SiteVisit), 1)]
            }
            (Persona::ImpulseBuyer, Purchase) => &[
                (None, 4),
                (Some(EmailOpen), 3),
                (Some(AdImpression), 1),
                (Some(SiteVisit), 2),
            ],

            // Driven by email, comes back again and again, buys repeatedly, speaks up for us.
            (Persona::NewsletterLoyalist, EmailOpen) => &[
                (None, 1),
                (Some(EmailClick), 8),
                (Some(EmailOpen), 6),
                (Some(SiteVisit), 3),
                (Some(StoreVisit), 2),
            ],
            (Persona::NewsletterLoyalist, SiteVisit) => &[
                (None, 1),
                (Some(Purchase), 3),
                (Some(SiteVisit), 5),
                (Some(EmailOpen), 6),
                (Some(ReviewWritten), 1),
                (Some(StoreVisit), 1),
            ],
            (Persona::NewsletterLoyalist, StoreVisit) => {
                &[(None, 1), (Some(Purchase), 3), (Some(EmailOpen), 4)]
            }
            (Persona::NewsletterLoyalist, Purchase) => &[
                (None, 1),
                (Some(EmailOpen), 12),
                (Some(ReviewWritten), 2),
                (Some(Referral), 1),
                (Some(NpsResponse), 1),
                (Some(SiteVisit), 1),
            ],
            (Persona::NewsletterLoyalist, ReviewWritten) => {
                &[(None, 1), (Some(EmailOpen), 3), (Some(Referral), 1)]
            }
            (Persona::NewsletterLoyalist, Referral) => &[(None, 1), (Some(EmailOpen), 3)],
            (Persona::NewsletterLoyalist, NpsResponse) => {
                &[(None, 1), (Some(EmailOpen), 3), (Some(ReviewWritten), 1)]
            }

            // Bought, then loops through tickets, support chats and ticket-update emails.
            (Persona::SupportHeavy, Purchase) => &[
                (None, 1),
                (Some(SupportTicket), 10),
                (Some(ChatSupport), 6),
                (Some(SiteVisit), 2),
                (Some(EmailOpen), 2),
            ],
            (Persona::SupportHeavy, SupportTicket) => &[
                (None, 1),
                (Some(ChatSupport), 10),
                (Some(SupportTicket), 6),
                (Some(EmailOpen), 8),
                (Some(NpsResponse), 2),
                (Some(SiteVisit), 2),
            ],
            (Persona::SupportHeavy, ChatSupport) => &[
                (None, 1),
                (Some(SupportTicket), 8),
                (Some(ChatSupport), 2),
                (Some(NpsResponse), 2),
                (Some(SiteVisit), 2),
            ],
            (Persona::SupportHeavy, EmailOpen) => &[
                (None, 1),
                (Some(EmailClick), 4),
                (Some(SupportTicket), 4),
                (Some(ChatSupport), 2),
            ],
            (Persona::SupportHeavy, SiteVisit) => &[
                (None, 1),
                (Some(ChatSupport), 6),
                (Some(SupportTicket), 4),
                (Some(Purchase), 2),
                (Some(SiteVisit), 2),
            ],
            (Persona::SupportHeavy, NpsResponse) => &[
                (None, 2),
                (Some(SupportTicket), 4),
                (Some(ReviewWritten), 2),
            ],

            // A look or two, sometimes the store, rarely anything more.
            (Persona::WindowShopper, SiteVisit) => &[
                (None, 16),
                (Some(SiteVisit), 40),
                (Some(StoreVisit), 8),
                (Some(ReviewRead), 8),
                (Some(ChatStarted), 2),
                (Some(Purchase), 1),
            ],
            (Persona::WindowShopper, StoreVisit) => {
                &[(None, 6), (Some(SiteVisit), 3), (Some(Purchase), 1)]
            }
            (Persona::WindowShopper, SocialPost) => &[(None, 2), (Some(SiteVisit), 4)],
            (Persona::WindowShopper, AdImpression) => {
                &[(None, 3), (Some(AdClick), 2), (Some(AdImpression), 1)]
            }
            (Persona::WindowShopper, ReviewRead) => &[(None, 3), (Some(SiteVisit), 2)],

            // Whatever a persona does not say: the common aftercare and a way back to the site.
            (_, Purchase) => &[(None, 5), (Some(EmailOpen), 2), (Some(SupportTicket), 1)],
            (_, SupportTicket) => &[(None, 2), (Some(ChatSupport), 2), (Some(NpsResponse), 1)],
            (_, ChatSupport) => &[(None, 2), (Some(SupportTicket), 1), (Some(NpsResponse), 1)],
            (_, NpsResponse) => &[(None, 3), (Some(ReviewWritten), 1)],
            (_, ReviewWritten) => &[(None, 3), (Some(Referral), 1)],
            (_, EmailOpen) => &[(None, 2), (Some(EmailClick), 2)],
            (_, Referral) => &[(None, 1)],
            (_, _) => &[(None, 1), (Some(SiteVisit), 1)],
        }
    }
}

const COUNTRIES: &[((&str, &str), u32)] = &[
    (("DE", "berlin"), 30),
    (("GB", "london"), 20),
    (("FR", "paris"), 15),
    (("US", "new_york"), 15),
    (("NL", "amsterdam"), 10),
    (("ES", "madrid"), 10),
];
const JOB_TITLES: &[&str] = &[
    "software engineer",
    "teacher",
    "nurse",
    "designer",
    "student",
    "marketing manager",
    "accountant",
    "retired",
    "sales associate",
    "founder",
];
const AGE_BANDS: &[(&str, u32)] = &[
    ("18-24", 15),
    ("25-34", 30),
    ("35-44", 25),
    ("45-54", 15),
    ("55-64", 10),
    ("65+", 5),
];
const INCOME_BANDS: &[(&str, u32)] = &[("low", 30), ("middle", 50), ("high", 20)];
const AD_SOURCES: &[(&str, &str)] = &[
    ("google", "cpc"),
    ("facebook", "paid_social"),
    ("instagram", "paid_social"),
    ("linkedin", "paid_social"),
    ("youtube", "video"),
];
const AD_CAMPAIGNS: &[&str] = &[
    "spring_sale",
    "brand_search",
    "new_collection",
    "free_shipping",
];
const EMAIL_CAMPAIGNS: &[&str] = &[
    "weekly_digest",
    "product_update",
    "abandoned_cart",
    "winback",
];
const PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/products/trail-runner",
    "/products/city-backpack",
    "/products/rain-shell",
    "/compare",
    "/blog/how-to-choose",
    "/faq",
    "/cart",
];
const SITE: &str = "https://shop.example.com";

struct Device {
    anonymous_id: String,
    identified: bool,
}

/// One simulated customer, appending its events as it lives through the window.
struct Customer<'a> {
    number: usize,
    persona: Persona,
    rng: SmallRng,
    now: i64,
    end_ms: i64,
    traits: Map<String, Value>,
    store: &'static str,
    user_id: Option<String>,
    crm_id: Option<String>,
    aliased: bool,
    devices: Vec<Device>,
    device: usize,
    utm_source: &'static str,
    campaign: &'static str,
    purchases: u32,
    /// Touchpoints recorded so far.
    touches: usize,
    /// See [`Behaviour::patience`].
    ready_after: usize,
    events: &'a mut Vec<Event>,
}

impl<'a> Customer<'a> {
    fn new(
        number: usize,
        mut rng: SmallRng,
        start_ms: i64,
        end_ms: i64,
        events: &'a mut Vec<Event>,
    ) -> Self {
        let shares: Vec<(Persona, u32)> = Persona::ALL
            .iter()
            .map(|&persona| (persona, persona.behaviour().share))
            .collect();
        let persona = pick(&mut rng, &shares);
        let behaviour = persona.behaviour();
        let (country, store) = pick(&mut rng, COUNTRIES);
        let traits = [
            ("persona", persona.name()),
            ("job_title", one_of(&mut rng, JOB_TITLES)),
            ("age_band", pick(&mut rng, AGE_BANDS)),
            ("income_band", pick(&mut rng, INCOME_BANDS)),
            ("country", country),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), Value::from(value)))
        .collect();
        let ready_after = rng.gen_range(behaviour.patience.clone());
        let user_id = behaviour.known.then(|| format!("cust-{number}"));
        let crm_id = rng.gen_bool(behaviour.crm).then(|| format!("crm-{number}"));
        let first_ms = start_ms + rng.gen_range(0..end_ms - start_ms);
        // Waking hours, unless that would leave the window: every customer shows up once.
        let now = Some(awake(first_ms))
            .filter(|&at_ms| at_ms < end_ms)
            .unwrap_or(first_ms);
        Self {
            number,
            persona,
            rng,
            now,
            end_ms,
            traits,
            store,
            user_id,
            crm_id,
            aliased: false,
            devices: vec![Device {
                anonymous_id: format!("anon-{}", number * DEVICES),
                identified: false,
            }],
            device: 0,
            utm_source: "",
            campaign: "",
            purchases: 0,
            touches: 0,
            ready_after,
            events,
        }
    }

    fn live(mut self) {
        let mut next = Some(pick(&mut self.rng, self.persona.entry()));
        let mut previous = None;
        for _ in 0..MAX_TOUCHES {
            let Some(touchpoint) = next.and_then(|wanted| self.reachable(wanted)) else {
                break;
            };
            if let Some(from) = previous {
                self.wait(from, touchpoint);
            }
            if self.now >= self.end_ms {
                break;
            }
            self.record(previous, touchpoint);
            self.touches += 1;
            previous = Some(touchpoint);
            next = pick(&mut self.rng, self.persona.moves(touchpoint));
        }
    }

    /// What actually happens when the walk wants `wanted`: a customer not yet ready to buy
    /// reads more reviews instead, and the brand cannot mail or serve someone it does not know,
    /// so unknown customers see retargeting ads instead of email and start a chat instead of a
    /// ticket.
    fn reachable(&self, wanted: Touchpoint) -> Option<Touchpoint> {
        if wanted == Purchase && self.touches < self.ready_after {
            return Some(ReviewRead);
        }
        if self.user_id.is_some() || !wanted.needs_user() {
            return Some(wanted);
        }
        match wanted {
            EmailOpen | EmailClick => Some(AdImpression),
            SupportTicket => Some(ChatStarted),
            _ => None,
        }
    }

    /// Moves the clock from one touchpoint to the next: minutes within a session, or a break of
    /// hours to weeks (rarely a month or more), after which the customer may be on the other
    /// device.
    fn wait(&mut self, from: Touchpoint, to: Touchpoint) {
        let link = session_link(from, to);
        if link > 0.0 && self.rng.gen_bool(link) {
            self.now += self.rng.gen_range(15_000..6 * MINUTE_MS);
            return;
        }
        let behaviour = self.persona.behaviour();
        // Exponential breaks: many short returns, a long tail of slow ones.
        let hours = -behaviour.break_hours * (1.0 - self.rng.gen::<f64>()).ln();
        let mut pause = MIN_BREAK_MS + (hours * HOUR_MS as f64) as i64;
        if self.rng.gen_bool(VANISH) {
            pause += self.rng.gen_range(25 * DAY_MS..45 * DAY_MS);
        }
        self.now = awake(self.now.saturating_add(pause));
        if self.rng.gen_bool(behaviour.switch_device) {
            if self.devices.len() < DEVICES {
                self.devices.push(Device {
                    anonymous_id: format!("anon-{}", self.number * DEVICES + self.devices.len()),
                    identified: false,
                });
            }
            self.device = (self.device + 1) % self.devices.len();
        }
    }

    fn record(&mut self, previous: Option<Touchpoint>, touchpoint: Touchpoint) {
        let identifies = match touchpoint {
            FormSubmit | Purchase => true,
            // Leaving an email address to be called back.
            ChatStarted => self.rng.gen_bool(0.3),
            SiteVisit => {
                self.user_id.is_some() && self.rng.gen_bool(self.persona.behaviour().login)
            }
            _ => false,
        };
        if identifies {
            self.identify();
        }
        let properties = self.properties(previous, touchpoint);
        let who = self.who(touchpoint);
        let channel = touchpoint.channel(previous);
        self.push(
            self.now,
            who,
            Body::Touchpoint {
                touchpoint: touchpoint.name().to_owned(),
                channel: channel.to_owned(),
                direct: default_direct(channel),
                properties,
            },
        );
        if matches!(touchpoint, SupportTicket | NpsResponse) && !self.aliased {
            self.alias();
        }
    }

    /// Ties the current device to the customer, making the customer known if it was not.
    fn identify(&mut self) {
        let device = &mut self.devices[self.device];
        if device.identified {
            return;
        }
        device.identified = true;
        let anonymous_id = device.anonymous_id.clone();
        let number = self.number;
        let user_id = self
            .user_id
            .get_or_insert_with(|| format!("cust-{number}"))
            .clone();
        let who = Who {
            anonymous_id: Some(anonymous_id),
            user_id: Some(user_id),
        };
        let traits = self.traits.clone();
        self.push(self.now, who, Body::Identify { traits });
    }

    /// The CRM syncs a while after its first ticket or survey: an alias joins its id to ours.
    fn alias(&mut self) {
        self.aliased = true;
        let (Some(previous_id), Some(user_id)) = (self.crm_id.clone(), self.user_id.clone()) else {
            return;
        };
        let at_ms = self.now + self.rng.gen_range(5 * MINUTE_MS..3 * HOUR_MS);
        let who = Who {
            anonymous_id: None,
            user_id: Some(user_id),
        };
        self.push(at_ms, who, Body::Alias { previous_id });
    }

    fn who(&self, touchpoint: Touchpoint) -> Who {
        debug_assert!(self.user_id.is_some() || !touchpoint.needs_user());
        let user_only = |user_id: Option<&String>| Who {
            anonymous_id: None,
            user_id: user_id.cloned(),
        };
        match touchpoint {
            EmailOpen | EmailClick | ReviewWritten | Referral => user_only(self.user_id.as_ref()),
            // Tickets and surveys come from the CRM, under its id when it has one.
            SupportTicket | NpsResponse => {
                user_only(self.crm_id.as_ref().or(self.user_id.as_ref()))
            }
            // A known customer shows the loyalty card; otherwise the store app sees the phone.
            StoreVisit if self.user_id.is_some() => user_only(self.user_id.as_ref()),
            _ => {
                let device = &self.devices[self.device];
                Who {
                    anonymous_id: Some(device.anonymous_id.clone()),
                    user_id: device.identified.then(|| self.user_id.clone()).flatten(),
                }
            }
        }
    }

    fn properties(
        &mut self,
        previous: Option<Touchpoint>,
        touchpoint: Touchpoint,
    ) -> Map<String, Value> {
        let rng = &mut self.rng;
        let pairs: Vec<(&str, Value)> = match touchpoint {
            AdImpression | AdClick => {
                if !(touchpoint == AdClick && previous == Some(AdImpression)) {
                    let (source, _) = one_of(rng, AD_SOURCES);
                    self.utm_source = source;
                    // Someone who browsed but is not known gets followed around by ads.
                    self.campaign = if previous.is_some() && self.user_id.is_none() {
                        "retargeting"
                    } else {
                        one_of(rng, AD_CAMPAIGNS)
                    };
                }
                let medium = AD_SOURCES
                    .iter()
                    .find(|(source, _)| *source == self.utm_source)
                    .map_or("cpc", |(_, medium)| medium);
                vec![
                    ("utm_source", self.utm_source.into()),
                    ("utm_medium", medium.into()),
                    ("campaign", self.campaign.into()),
                ]
            }
            EmailOpen | EmailClick => {
                if !(touchpoint == EmailClick && previous == Some(EmailOpen)) {
                    self.utm_source = "newsletter";
                    self.campaign = match previous {
                        Some(Purchase) => "order_followup",
                        Some(SupportTicket | ChatSupport) => "ticket_update",
                        _ => one_of(rng, EMAIL_CAMPAIGNS),
                    };
                    if self.campaign != "weekly_digest" {
                        self.utm_source = "crm";
                    }
                }
                vec![
                    ("utm_source", self.utm_source.into()),
                    ("utm_medium", "email".into()),
                    ("campaign", self.campaign.into()),
                ]
            }
            SiteVisit => match previous {
                Some(AdClick) => vec![
                    ("url", format!("{SITE}/lp/{}", self.campaign).into()),
                    ("utm_source", self.utm_source.into()),
                    ("campaign", self.campaign.into()),
                ],
                Some(EmailClick) => vec![
                    ("url", format!("{SITE}/offers/{}", self.campaign).into()),
                    ("utm_source", self.utm_source.into()),
                    ("campaign", self.campaign.into()),
                ],
                Some(Purchase) => vec![("url", format!("{SITE}/account/orders").into())],
                Some(ChatSupport | SupportTicket) => vec![("url", format!("{SITE}/help").into())],
                _ => vec![("url", format!("{SITE}{}", one_of(rng, PAGES)).into())],
            },
            SocialPost => vec![(
                "platform",
                one_of(rng, &["instagram", "tiktok", "linkedin", "x"]).into(),
            )],
            ReviewRead => vec![(
                "site",
                one_of(rng, &["trustpilot", "google_reviews", "reddit", "youtube"]).into(),
            )],
            ChatStarted => vec![(
                "topic",
                one_of(rng, &["sizing", "shipping", "pricing", "availability"]).into(),
            )],
            FormSubmit => vec![(
                "form",
                one_of(
                    rng,
                    &["newsletter", "contact", "quote_request", "back_in_stock"],
                )
                .into(),
            )],
            StoreVisit => vec![("store", self.store.into())],
            Purchase => {
                self.purchases += 1;
                let (low, high) = self.persona.behaviour().basket;
                let cents = (rng.gen_range(low..high) * 100.0).round();
                vec![
                    ("value", (cents / 100.0).into()),
                    ("currency", "EUR".into()),
                    ("items", rng.gen_range(1..=4).into()),
                    (
                        "order_id",
                        format!("ord-{}-{}", self.number, self.purchases).into(),
                    ),
                ]
            }
            SupportTicket => vec![
                (
                    "topic",
                    one_of(rng, &["delivery", "return", "billing", "defect", "account"]).into(),
                ),
                ("priority", one_of(rng, &["low", "normal", "high"]).into()),
            ],
            ChatSupport => vec![(
                "topic",
                one_of(rng, &["order_status", "return", "product_help"]).into(),
            )],
            NpsResponse => {
                let (low, high) = self.persona.behaviour().nps;
                vec![("score", rng.gen_range(low..=high).into())]
            }
            ReviewWritten => {
                let rating = match self.persona {
                    Persona::NewsletterLoyalist => rng.gen_range(4..=5),
                    Persona::SupportHeavy => rng.gen_range(1..=4),
                    _ => rng.gen_range(2..=5),
                };
                vec![
                    (
                        "site",
                        one_of(rng, &["trustpilot", "google_reviews"]).into(),
                    ),
                    ("rating", rating.into()),
                ]
            }
            Referral => vec![("via", one_of(rng, &["link", "email", "whatsapp"]).into())],
        };
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }

    /// Appends an event, unless it falls after the window: the export is cut there.
    fn push(&mut self, at_ms: i64, who: Who, body: Body) {
        if at_ms >= self.end_ms {
            return;
        }
        self.events.push(Event {
            event_id: Builder::from_random_bytes(self.rng.gen()).into_uuid(),
            at_ms,
            received_ms: at_ms,
            who,
            body,
            ip: None,
        });
    }
}

/// Nobody browses between midnight and seven (UTC stands in for local time here).
fn awake(at_ms: i64) -> i64 {
    if at_ms.rem_euclid(DAY_MS) < 7 * HOUR_MS {
        at_ms + 7 * HOUR_MS
    } else {
        at_ms
    }
}

fn pick<T: Copy>(rng: &mut SmallRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.gen_range(0..total);
    for &(choice, weight) in choices {
        if roll < weight {
            return choice;
        }
        roll -= weight;
    }
    unreachable!("the roll is below the total weight")
}

fn one_of<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use uuid::Uuid;

    use super::*;
    use crate::event::{validate, EventLimits, IdentityKey};
    use crate::journey::JourneySet;
    use crate::stitch::{JourneyBook, JourneyFilter};

    fn options(customers: usize, seed: u64) -> DemoOptions {
        DemoOptions {
            customers,
            seed,
            ..DemoOptions::default()
        }
    }

    fn touchpoint_of(event: &Event) -> Option<&str> {
        match &event.body {
            Body::Touchpoint { touchpoint, .. } => Some(touchpoint),
            _ => None,
        }
    }

    /// The customer number behind an event, from the id scheme documented on [`generate`].
    fn customer_of(event: &Event) -> usize {
        let id = event
            .who
            .user_id
            .as_deref()
            .or(event.who.anonymous_id.as_deref())
            .expect("someone is named");
        let (kind, number) = id.split_once('-').expect("ids are kind-number");
        let number: usize = number.parse().expect("numbered id");
        if kind == "anon" {
            number / DEVICES
        } else {
            number
        }
    }

    fn book_of(events: &[Event]) -> JourneyBook {
        let mut book = JourneyBook::new();
        for event in events {
            assert!(book.add(event), "duplicate event id {}", event.event_id);
        }
        book
    }

    fn persona_journeys(book: &JourneyBook, persona: &str) -> JourneySet {
        book.journeys(&JourneyFilter {
            traits: vec![("persona".into(), persona.into())],
            ..JourneyFilter::default()
        })
    }

    #[test]
    fn same_seed_gives_identical_events() {
        assert_eq!(generate(&options(500, 42)), generate(&options(500, 42)));
    }

    #[test]
    fn different_seeds_give_different_events() {
        let (first, second) = (generate(&options(500, 1)), generate(&options(500, 2)));
        assert_ne!(first, second);
        let first_ids: HashSet<Uuid> = first.iter().map(|event| event.event_id).collect();
        assert!(second
            .iter()
            .all(|event| !first_ids.contains(&event.event_id)));
    }

    #[test]
    fn a_customer_does_not_depend_on_how_many_there_are() {
        let few = generate(&options(100, 5));
        let more: Vec<Event> = generate(&options(200, 5))
            .into_iter()
            .filter(|event| customer_of(event) < 100)
            .collect();
        assert_eq!(few, more);
    }

    #[test]
    fn default_set_has_realistic_volume_and_conversion() {
        let demo = DemoOptions::default();
        let events = generate(&demo);
        assert!(
            (85_000..=115_000).contains(&events.len()),
            "{}",
            events.len()
        );
        let touches: Vec<&Event> = events
            .iter()
            .filter(|event| touchpoint_of(event).is_some())
            .collect();
        let per_customer = touches.len() as f64 / demo.customers as f64;
        assert!((8.0..=12.0).contains(&per_customer), "{per_customer}");
        let customers: HashSet<usize> = touches.iter().map(|event| customer_of(event)).collect();
        assert_eq!(customers.len(), demo.customers, "everyone shows up");
        let buyers: HashSet<usize> = touches
            .iter()
            .filter(|event| touchpoint_of(event) == Some("purchase"))
            .map(|event| customer_of(event))
            .collect();
        let conversion = buyers.len() as f64 / demo.customers as f64;
        assert!((0.15..=0.30).contains(&conversion), "{conversion}");
        let names: HashSet<&str> = touches
            .iter()
            .filter_map(|event| touchpoint_of(event))
            .collect();
        assert_eq!(names.len(), 16, "{names:?}");
        let identifies = events
            .iter()
            .filter(|event| matches!(event.body, Body::Identify { .. }))
            .count();
        assert!(
            identifies > demo.customers / 5 && identifies < demo.customers,
            "{identifies}"
        );
    }

    #[test]
    fn events_are_sorted_inside_the_window_and_pass_validation() {
        let demo = options(1_000, 3);
        let end_ms = demo.start_ms + i64::from(demo.days) * DAY_MS;
        let events = generate(&demo);
        assert!(events.windows(2).all(|pair| pair[0].at_ms <= pair[1].at_ms));
        let ids: HashSet<Uuid> = events.iter().map(|event| event.event_id).collect();
        assert_eq!(ids.len(), events.len());
        for event in &events {
            assert!((demo.start_ms..end_ms).contains(&event.at_ms), "{event:?}");
            assert_eq!(event.received_ms, event.at_ms);
            // Back to the wire shape a sender would post, then through the collector's rules.
            let wire = event.to_wire();
            let len = wire.to_string().len();
            let checked = validate(
                &wire,
                len,
                event.received_ms,
                Uuid::nil,
                &EventLimits::default(),
            );
            assert_eq!(checked.as_ref(), Ok(event), "{wire}");

            let Body::Touchpoint {
                touchpoint,
                channel,
                properties,
                ..
            } = &event.body
            else {
                continue;
            };
            assert!(!channel.is_empty());
            let has = |key: &str| properties.contains_key(key);
            match touchpoint.as_str() {
                "email_open" | "email_click" => {
                    assert!(event.who.anonymous_id.is_none() && event.who.user_id.is_some());
                    assert!(has("utm_source") && has("campaign"), "{event:?}");
                }
                "ad_impression" | "ad_click" => {
                    assert!(has("utm_source") && has("campaign"), "{event:?}")
                }
                "site_visit" => {
                    assert!(properties["url"].as_str().unwrap().starts_with("https://"))
                }
                "purchase" => assert!(properties["value"].as_f64().unwrap() > 0.0),
                "nps_response" => assert!(properties["score"].as_u64().unwrap() <= 10),
                _ => {}
            }
        }
    }

    #[test]
    fn stitching_merges_devices_and_crm_ids_and_every_persona_appears() {
        let demo = options(2_000, 11);
        let events = generate(&demo);
        let book = book_of(&events);
        let anonymous_ids: HashSet<&str> = events
            .iter()
            .filter_map(|event| event.who.anonymous_id.as_deref())
            .collect();
        let journeys = book.journeys(&JourneyFilter::default()).journeys;
        assert!(journeys.len() >= demo.customers);
        assert!(
            journeys.len() < anonymous_ids.len(),
            "{} journeys",
            journeys.len()
        );

        let user_ids: HashSet<&str> = events
            .iter()
            .filter(|event| matches!(event.body, Body::Identify { .. }))
            .filter_map(|event| event.who.user_id.as_deref())
            .collect();
        let two_devices = user_ids.iter().any(|user| {
            let customer = book.customer(&IdentityKey::user(user)).unwrap();
            customer
                .identities
                .iter()
                .filter(|id| !id.is_user())
                .count()
                >= 2
        });
        assert!(two_devices, "someone is identified on two devices");

        let alias = events
            .iter()
            .find_map(|event| match &event.body {
                Body::Alias { previous_id } => Some((previous_id, event.who.user_id.as_deref())),
                _ => None,
            })
            .expect("some customer lives in the CRM too");
        let crm_customer = book.customer(&IdentityKey::user(alias.0)).unwrap();
        assert!(crm_customer
            .identities
            .contains(&IdentityKey::user(alias.1.unwrap())));

        for persona in PERSONAS {
            assert!(
                !persona_journeys(&book, persona).journeys.is_empty(),
                "{persona}"
            );
        }
    }

    #[test]
    fn personas_behave_differently() {
        let book = book_of(&generate(&options(3_000, 13)));
        // (mean touchpoints per journey, share converting, median hours to the first purchase)
        let profile = |persona: &str| {
            let set = persona_journeys(&book, persona);
            let purchase = set.symbols.get("purchase").unwrap();
            let mut hours: Vec<i64> = set
                .journeys
                .iter()
                .filter_map(|journey| {
                    let first = journey.steps.first()?.at_ms;
                    let bought = journey
                        .steps
                        .iter()
                        .find(|step| step.touchpoint == purchase)?;
                    Some((bought.at_ms - first) / HOUR_MS)
                })
                .collect();
            hours.sort_unstable();
            let count = set.journeys.len() as f64;
            (
                set.event_count() as f64 / count,
                hours.len() as f64 / count,
                hours[hours.len() / 2],
            )
        };
        let researcher = profile("researcher");
        let impulse = profile("impulse_buyer");
        let loyalist = profile("newsletter_loyalist");
        let window = profile("window_shopper");
        assert!(researcher.0 > 2.0 * impulse.0, "{researcher:?} {impulse:?}");
        assert!(
            impulse.2 < 24 && researcher.2 > 24 * impulse.2.max(1),
            "{researcher:?} {impulse:?}"
        );
        assert!(loyalist.0 > window.0, "{loyalist:?} {window:?}");
        assert!(impulse.1 > researcher.1, "{impulse:?} {researcher:?}");
    }

    #[test]
    fn nothing_to_simulate_gives_no_events() {
        assert!(generate(&options(0, 7)).is_empty());
        let no_days = DemoOptions {
            days: 0,
            ..DemoOptions::default()
        };
        assert!(generate(&no_days).is_empty());
    }
}
