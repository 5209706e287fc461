//! One module per command. Each returns whether it succeeded; errors carry what to do.

pub mod credentials;
#[cfg(feature = "demo")]
mod demo;
pub mod discover;
mod doctor;
mod folders;
mod import;
mod init;
mod login;
mod mailbox;
mod outbox;
mod send;
mod serve;
mod status;

use crate::args::{Backend, Cli, Command, CredentialsCommand};
use crate::context::Context;

pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    let global = &cli.global;
    match cli.command {
        Command::Init { force } => init::run(&global.config, force),
        #[cfg(feature = "demo")]
        Command::Demo { keep_running, dir } => demo::run(keep_running, dir).await,
        // Signing in on AWS touches the credential's secret only: no table or bucket to name.
        Command::Credentials {
            command: CredentialsCommand::Login(args),
        } if global.backend == Backend::Aws => credentials::login_aws(args).await,
        command => {
            let context = Context::open(global).await?;
            match command {
                Command::Doctor {
                    mailbox,
                    send_test,
                    to,
                } => {
                    let send_test = send_test.then_some(to.as_deref());
                    doctor::run(&context, mailbox.as_deref(), send_test).await
                }
                Command::Folders {
                    mailbox,
                    credential,
                } => folders::run(&context, &mailbox, credential.as_deref()).await,
                Command::Mailbox { command } => mailbox::run(&context, global, command).await,
                Command::Import { mailbox } => import::run(&context, mailbox.as_deref()).await,
                Command::Discover { dry_run, command } => {
                    discover::run(&context, global, dry_run, command).await
                }
                Command::Status => status::run(&context).await,
                Command::Send(args) => send::run(&context, args).await,
                Command::Credentials { command } => {
                    credentials::run(&context, global, command).await
                }
                Command::Serve {
                    every,
                    listen,
                    public_url,
                } => {
                    let push = listen.zip(public_url);
                    serve::run(&context, every, push).await
                }
                // Handled above, before a context is opened.
                Command::Init { .. } => Ok(true),
                #[cfg(feature = "demo")]
                Command::Demo { .. } => Ok(true),
            }
        }
    }
}
