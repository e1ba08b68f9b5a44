#![doc = include_str!("../README.md")]

pub mod analysis;
pub mod document;
pub mod keys;
pub mod rules;
pub mod template;

pub use analysis::{
    AnalysisError, Finding, FindingCode, InputAnalysis, OutputAnalysis, OutputClass, Ownership,
    PsbtAnalysis, SigningTarget, SpendingPath, analyze, hsm_signing_targets,
};
pub use document::{PolicyDocument, PolicyError, PolicyId, Rules};
pub use keys::{HsmKey, KeyError, Keychain, RecoveryKey};
pub use rules::{
    CompiledRules, Context, Decision, Evaluation, OfficerId, RuleId, RuleOutcome, RulesError,
    Status, evaluate,
};
pub use template::{DescriptorPair, Template, TemplateError};
