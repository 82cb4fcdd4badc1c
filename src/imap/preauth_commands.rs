//! The commands an IMAP client may send before login, as the pre-auth
//! machine answers them: `CAPABILITY`, `NOOP`, `LOGOUT`, `ID`, `STARTTLS`,
//! `LOGIN` and `AUTHENTICATE` (the SASL exchange itself is
//! [`crate::auth::sasl`]). Part of the machine: no I/O.

use super::{ImapPreAuth, State, MAX_ID_FIELDS};
use crate::auth::sasl::{Mechanism, SaslExchange, SaslStep};
use crate::auth::{Credentials, SaslError, Secret};
use crate::imap::command::{self, Token};
use crate::login::{LoginFailure, PreAuth, PreAuthEvent};

impl ImapPreAuth {
    pub(super) fn dispatch(&mut self, cmd: &command::Command) -> Option<PreAuthEvent> {
        let tag = cmd.tag;
        let no_args = cmd.args.is_empty();
        match cmd.name.as_str() {
            "CAPABILITY" if no_args => {
                let caps = self.capabilities();
                self.reply(format_args!("* CAPABILITY {caps}"));
                self.reply(format_args!("{tag} OK Capability completed."));
            }
            "NOOP" if no_args => self.reply(format_args!("{tag} OK NOOP completed.")),
            "LOGOUT" if no_args => {
                self.reply(format_args!("* BYE Logging out."));
                self.reply(format_args!("{tag} OK Logout completed."));
                self.state = State::Closed;
                return Some(PreAuthEvent::Close);
            }
            "ID" if id_arguments_valid(&cmd.args) => {
                self.reply(format_args!("* ID NIL"));
                self.reply(format_args!("{tag} OK ID completed."));
            }
            "LOGIN" | "AUTHENTICATE" if !self.login_allowed() => self.reply(format_args!(
                "{tag} NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS."
            )),
            "LOGIN" => return self.login(tag, &cmd.args),
            "AUTHENTICATE" => return self.authenticate(tag, &cmd.args),
            "STARTTLS" if no_args && self.settings.starttls && !self.tls_active => {
                self.reply(format_args!("{tag} OK Begin TLS negotiation now."));
                self.state = State::StartingTls;
                return Some(PreAuthEvent::StartTls);
            }
            "CAPABILITY" | "NOOP" | "LOGOUT" | "ID" => {
                self.reply(format_args!("{tag} BAD Invalid arguments."))
            }
            "STARTTLS" => self.reply(format_args!("{tag} BAD STARTTLS is not offered here.")),
            _ => self.reply(format_args!(
                "{tag} BAD Unknown command or not allowed before login."
            )),
        }
        None
    }

    fn login(&mut self, tag: &str, args: &[Token]) -> Option<PreAuthEvent> {
        let (Some(user), Some(password), 2) = (
            args.first().and_then(Token::as_astring),
            args.get(1).and_then(Token::as_astring),
            args.len(),
        ) else {
            self.reply(format_args!(
                "{tag} BAD LOGIN expects a user name and a password."
            ));
            return None;
        };
        match std::str::from_utf8(user) {
            Ok(user) if !user.is_empty() => Some(self.start_login(
                tag,
                Credentials::with_password(user.to_owned(), Secret::new(password.to_vec())),
            )),
            _ => self.fail_now(tag),
        }
    }

    fn authenticate(&mut self, tag: &str, args: &[Token]) -> Option<PreAuthEvent> {
        let mechanism = match args.first() {
            Some(Token::Atom(name)) => Mechanism::parse(name),
            _ => {
                self.reply(format_args!("{tag} BAD Missing authentication mechanism."));
                return None;
            }
        };
        let initial = match args.get(1) {
            None => None,
            Some(Token::Atom(ir)) if args.len() == 2 => Some(*ir),
            Some(_) => {
                self.reply(format_args!("{tag} BAD Invalid AUTHENTICATE arguments."));
                return None;
            }
        };
        let Some(mechanism) = mechanism.filter(|m| self.settings.offers(*m)) else {
            self.reply(format_args!(
                "{tag} NO Unsupported authentication mechanism."
            ));
            return None;
        };
        let max_token = self.settings.max_token();
        self.sasl_step(
            tag.to_owned(),
            SaslExchange::start(mechanism, initial, max_token),
        )
    }

    /// Acts on one step of an `AUTHENTICATE` exchange.
    pub(super) fn sasl_step(&mut self, tag: String, step: SaslStep) -> Option<PreAuthEvent> {
        self.state = State::Commands;
        match step {
            SaslStep::Challenge { challenge, next } => {
                self.reply(format_args!("+ {challenge}"));
                self.state = State::Sasl {
                    tag,
                    exchange: next,
                };
                None
            }
            SaslStep::Done(credentials) => Some(self.start_login(&tag, credentials)),
            SaslStep::Failed(SaslError::Cancelled) => {
                self.reply(format_args!("{tag} BAD AUTHENTICATE cancelled."));
                None
            }
            SaslStep::Failed(SaslError::Base64) => {
                self.reply(format_args!("{tag} BAD Invalid base64 data."));
                None
            }
            SaslStep::Failed(_) => self.fail_now(&tag),
        }
    }

    fn start_login(&mut self, tag: &str, credentials: Credentials) -> PreAuthEvent {
        self.state = State::LoggingIn {
            tag: tag.to_owned(),
            bearer: credentials.bearer.is_some(),
        };
        PreAuthEvent::Login(credentials)
    }

    /// Credentials that cannot be valid: fail without asking anyone.
    fn fail_now(&mut self, tag: &str) -> Option<PreAuthEvent> {
        self.state = State::LoggingIn {
            tag: tag.to_owned(),
            bearer: false,
        };
        self.login_failed(LoginFailure::AuthFailed);
        match self.state {
            State::Closed => Some(PreAuthEvent::Close),
            _ => None,
        }
    }
}

/// `ID NIL` or `ID (k v …)` with string keys and nstring values.
fn id_arguments_valid(args: &[Token]) -> bool {
    match args {
        [nil] => nil.is_nil(),
        [Token::ListStart, pairs @ .., Token::ListEnd] => {
            pairs.len() % 2 == 0
                && pairs.len() <= 2 * MAX_ID_FIELDS
                && pairs
                    .iter()
                    .all(|t| matches!(t, Token::Quoted(_) | Token::Literal(_)) || t.is_nil())
        }
        _ => false,
    }
}
