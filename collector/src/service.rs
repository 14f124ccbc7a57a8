//! The gRPC services. Errors become `tonic::Status` in one place
//! ([`internal`]): detail goes to the log, never to the client.

use crate::pki::Issued;
use crate::rfc3339;
use crate::server::{State, peer};
use crate::store::{
    CheckIn, CheckInOutcome, EnrollError, HostFilter, HostRow, ImportOutcome, RenewError,
    StoreError, now,
};
use muster_catalog::evaluate;
use muster_proto::v1;
use muster_proto::{
    detection_from_wire, detection_to_wire, facts_from_wire, facts_to_wire, section_from_wire,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Most timeline events `GetHost` returns (the newest).
const TIMELINE_SHOWN: u32 = 500;

/// Logs a storage failure and gives the client an opaque error.
fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "request failed");
    Status::internal("the collector could not complete the request; see its log")
}

/// A new enrollment token: 24 random bytes in hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// A new operator token (the HTTP API's bearer token): `musterop_` and 32
/// random bytes in hex. The prefix tells it apart from an enrollment token
/// (and lets secret scanners find one pasted where it should not be).
pub fn new_operator_token() -> String {
    format!("musterop_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The hash under which a token (enrollment or operator) is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// `Enrollment`: token + CSR -> agent certificate.
pub struct EnrollmentService(pub Arc<State>);

#[tonic::async_trait]
impl v1::enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        req: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let addr = req
            .extensions()
            .get::<crate::server::Caller>()
            .and_then(|c| c.remote);
        let r = req.into_inner();
        let facts = facts_from_wire(r.facts.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.0))?;
        if facts.hostname.is_empty() {
            return Err(Status::invalid_argument("the enrollment names no hostname"));
        }
        let st = &self.0;
        let days = st.config.agent_certificate_days;
        let csr = r.csr_pem;
        let authority = st.authority();
        let result = st
            .store
            .enroll(&token_hash(&r.token), &facts, |id| {
                authority
                    .sign_agent_csr(&csr, id, days)
                    .map_err(|e| e.to_string())
            })
            .await;
        match result {
            Ok((
                id,
                Issued {
                    cert_pem, serial, ..
                },
            )) => {
                tracing::info!(host = %id, hostname = %facts.hostname, serial = %serial, "agent enrolled");
                Ok(Response::new(v1::EnrollResponse {
                    agent_id: id,
                    certificate_pem: cert_pem,
                    ca_pem: authority.cert_pem.clone(),
                }))
            }
            Err(EnrollError::Token(t)) => {
                tracing::warn!(peer = ?addr, reason = %t, "enrollment refused");
                Err(Status::permission_denied(t.to_string()))
            }
            Err(EnrollError::Sign(e)) => {
                tracing::warn!(peer = ?addr, error = %e, "enrollment refused");
                Err(Status::invalid_argument(e))
            }
            Err(EnrollError::Store(e)) => Err(internal(e)),
        }
    }
}

/// `Agent`: check-ins.
pub struct AgentService(pub Arc<State>);

fn parse_checkin(r: v1::CheckInRequest, max_items: usize) -> Result<CheckIn, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    if r.sequence == 0 {
        return Err(bad("sequence must start at 1".into()));
    }
    let mut digests = BTreeMap::new();
    for d in r.digests {
        if d.digest.len() != 64 || !d.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "section {:?}: digest is not SHA-256 hex",
                d.name
            )));
        }
        if digests.insert(d.name.clone(), d.digest).is_some() {
            return Err(bad(format!("section {:?} is listed twice", d.name)));
        }
    }
    let mut sections = BTreeMap::new();
    for s in r.sections {
        if s.items.len() > max_items {
            return Err(bad(format!(
                "section {:?} has {} items, more than the limit of {max_items}",
                s.name,
                s.items.len()
            )));
        }
        let (name, section) = section_from_wire(s).map_err(|e| bad(e.0))?;
        if digests.get(&name) != Some(&section.digest()) {
            return Err(bad(format!(
                "section {name:?} is sent but its digest is not listed"
            )));
        }
        if sections.insert(name.clone(), section).is_some() {
            return Err(bad(format!("section {name:?} is sent twice")));
        }
    }
    let mut agent_detections = Vec::with_capacity(r.detections.len());
    for d in r.detections {
        agent_detections.push(detection_from_wire(d).map_err(|e| bad(e.0))?);
    }
    Ok(CheckIn {
        sequence: r.sequence,
        facts: facts_from_wire(r.facts.unwrap_or_default()).map_err(|e| bad(e.0))?,
        digests,
        sections,
        agent_detections,
        catalog_version: r.catalog_version,
        scanned_at: r.scanned_at,
    })
}

#[tonic::async_trait]
impl v1::agent_server::Agent for AgentService {
    async fn check_in(
        &self,
        req: Request<v1::CheckInRequest>,
    ) -> Result<Response<v1::CheckInResponse>, Status> {
        let who = peer(&req)?;
        let st = &self.0;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if let Err(wait) = st.admission.admit(now) {
            st.metrics.checkin("deferred");
            tracing::debug!(host = %who.id, retry_after = wait, "check-in deferred: over max_checkins_per_second");
            return Err(muster_proto::busy::status(wait));
        }
        let c = parse_checkin(req.into_inner(), st.config.max_section_items).inspect_err(|e| {
            st.metrics.refused("invalid");
            tracing::warn!(host = %who.id, error = %e.message(), "check-in refused");
        })?;
        let c = Arc::new(c);
        let catalog = &st.catalog;
        // The catalog evaluates on the store's writer; what it found comes
        // back here for the comparison with the agent's own detections.
        let found = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (shared, state) = (found.clone(), self.0.clone());
        let outcome = st
            .store
            .checkin(&who.id, c.clone(), &catalog.digest, move |inv| {
                let detections = evaluate(inv, &state.catalog);
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = detections.clone();
                detections
            })
            .await
            .map_err(|e| {
                st.metrics.refused("store_error");
                internal(e)
            })?;
        let mut resp = v1::CheckInResponse {
            acknowledged_sequence: 0,
            missing_sections: Vec::new(),
            next_interval_seconds: st.config.interval().as_secs() as u32,
            catalog_version: catalog.version.clone(),
        };
        match outcome {
            CheckInOutcome::Accepted {
                detections,
                superseded,
                reappeared,
            } => {
                st.metrics.checkin("accepted");
                resp.acknowledged_sequence = c.sequence;
                for old in &superseded {
                    tracing::info!(host = %who.id, superseded = %old, hostname = %c.facts.hostname, "a newer agent on the same machine superseded a host");
                }
                if let Some(by) = reappeared {
                    tracing::warn!(host = %who.id, superseded_by = %by, hostname = %c.facts.hostname, "a superseded host reported again: two machines share this hostname; both are kept");
                }
                // An unchanged report, most of any fleet's, is a debug line:
                // at 100 000 hosts an INFO line each was hundreds a second.
                // Its record is the check-in log (`checkins`).
                if c.sections.is_empty() {
                    tracing::debug!(host = %who.id, sequence = c.sequence, detections, "check-in accepted");
                } else {
                    tracing::info!(
                        host = %who.id,
                        sequence = c.sequence,
                        sections = c.sections.len(),
                        detections,
                        "check-in accepted"
                    );
                }
                let collector_found =
                    std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
                if !collector_found.is_empty() || !c.agent_detections.is_empty() {
                    let ours: BTreeSet<_> = collector_found
                        .iter()
                        .map(|d| (&d.product_id, d.state))
                        .collect();
                    let theirs: BTreeSet<_> = c
                        .agent_detections
                        .iter()
                        .map(|d| (&d.product_id, d.state))
                        .collect();
                    if ours != theirs && c.catalog_version == catalog.version {
                        tracing::warn!(host = %who.id, collector = ?ours, agent = ?theirs, "agent and collector detections differ");
                    }
                }
            }
            CheckInOutcome::Duplicate => {
                st.metrics.checkin("duplicate");
                resp.acknowledged_sequence = c.sequence;
                tracing::info!(host = %who.id, sequence = c.sequence, "check-in already stored");
            }
            CheckInOutcome::Missing(m) => {
                st.metrics.checkin("missing_sections");
                tracing::info!(host = %who.id, missing = ?m, "check-in lacks a base; full sections requested");
                resp.missing_sections = m;
            }
            CheckInOutcome::UnknownHost => {
                st.metrics.refused("unknown_host");
                return Err(Status::permission_denied(format!(
                    "host {} is not enrolled with this collector",
                    who.id
                )));
            }
            CheckInOutcome::Revoked { at } => {
                st.metrics.refused("revoked");
                tracing::warn!(host = %who.id, "check-in refused: the host is revoked");
                return Err(Status::permission_denied(format!(
                    "host {} was revoked by an operator at {}; its reports are refused \
                     (enroll it again with a new token to bring it back)",
                    who.id,
                    crate::rfc3339(at)
                )));
            }
        }
        Ok(Response::new(resp))
    }

    async fn renew_certificate(
        &self,
        req: Request<v1::RenewCertificateRequest>,
    ) -> Result<Response<v1::RenewCertificateResponse>, Status> {
        let who = peer(&req)?;
        let csr = req.into_inner().csr_pem;
        let st = &self.0;
        let days = st.config.agent_certificate_days;
        let authority = st.authority();
        let issued = st
            .store
            .renew_certificate(&who.id, || {
                authority
                    .sign_agent_csr(&csr, &who.id, days)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| {
                tracing::warn!(host = %who.id, error = %e, "certificate renewal refused");
                renew_refused(&who.id, e)
            })?;
        tracing::info!(host = %who.id, serial = %issued.serial, days, "agent certificate renewed");
        Ok(Response::new(v1::RenewCertificateResponse {
            certificate_pem: issued.cert_pem,
            ca_pem: authority.cert_pem.clone(),
        }))
    }
}

/// `Agent.RenewCertificate`'s refusals, for an agent to act on.
fn renew_refused(id: &str, e: RenewError) -> Status {
    match e {
        RenewError::Unknown => {
            Status::permission_denied(format!("host {id} is not enrolled with this collector"))
        }
        RenewError::Revoked => Status::permission_denied(format!(
            "host {id} was revoked by an operator; its certificate is not renewed \
             (enroll it again with a new token to bring it back)"
        )),
        RenewError::Sign(e) => Status::invalid_argument(e),
        RenewError::Store(e) => internal(e),
    }
}

/// `Operator`: read the fleet.
pub struct OperatorService(pub Arc<State>);

/// Hosts read from the store at a time when listing.
const HOSTS_PAGE: u32 = 500;

/// A request field whose value is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    /// The field (the HTTP API's query parameter of the same name).
    pub field: &'static str,
    /// What is wrong, for the caller.
    pub message: String,
}

impl From<BadField> for Status {
    fn from(b: BadField) -> Status {
        Status::invalid_argument(b.message)
    }
}

/// Whether a host passes `policy` (a `violates` listing keeps those that
/// do not).
fn passes(policy: &muster_catalog::Policy, h: &HostRow) -> bool {
    let platform = muster_catalog::Platform::parse(&h.facts.platform);
    let found: Vec<_> = h.detections.iter().map(|d| d.detection.clone()).collect();
    policy.verdict(&found, platform).verdict == "pass"
}

impl OperatorService {
    /// The store filter and the policy (for `violates`) a listing asks for;
    /// names that match nothing in the catalog are the caller's error,
    /// which names the field at fault.
    pub(crate) fn host_filter(
        &self,
        r: &v1::ListHostsRequest,
    ) -> Result<(HostFilter, Option<muster_catalog::Policy>), BadField> {
        let catalog = &self.0.catalog;
        let bad = |field: &'static str, message: String| BadField { field, message };
        if !r.product.is_empty() && catalog.product(&r.product).is_none() {
            return Err(bad(
                "product",
                format!(
                    "no product {:?} in the catalog (see muster catalog list)",
                    r.product
                ),
            ));
        }
        if !r.vendor.is_empty()
            && !catalog
                .vendors()
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&r.vendor))
        {
            return Err(bad(
                "vendor",
                format!(
                    "no vendor {:?} in the catalog (see muster catalog list)",
                    r.vendor
                ),
            ));
        }
        if !r.category.is_empty() && muster_catalog::Category::parse(&r.category).is_none() {
            return Err(bad(
                "category",
                format!(
                    "no category {:?} (antivirus, edr, hids, firewall, vulnerability-agent, dlp, vpn, password-manager, parental-control, other)",
                    r.category
                ),
            ));
        }
        if !r.state.is_empty() && !["running", "installed", "remnant"].contains(&r.state.as_str()) {
            return Err(bad(
                "state",
                format!("no state {:?} (running, installed or remnant)", r.state),
            ));
        }
        let policy = if r.violates.is_empty() {
            None
        } else {
            Some(catalog.policy(&r.violates).cloned().ok_or_else(|| {
                bad(
                    "violates",
                    format!(
                        "no policy {:?} in the catalog (see muster catalog list)",
                        r.violates
                    ),
                )
            })?)
        };
        let by_product = !(r.product.is_empty()
            && r.vendor.is_empty()
            && r.category.is_empty()
            && r.state.is_empty());
        let products = by_product.then(|| {
            catalog
                .products
                .iter()
                .filter(|p| r.product.is_empty() || p.id == r.product)
                .filter(|p| r.vendor.is_empty() || p.vendor.eq_ignore_ascii_case(&r.vendor))
                .filter(|p| r.category.is_empty() || p.category.as_str() == r.category)
                .map(|p| p.id.clone())
                .collect()
        });
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        Ok((
            HostFilter {
                products,
                state: text(&r.state),
                os: text(&r.os),
                name: text(&r.name),
                stale_before: r.stale.then(|| self.stale_before()),
                include_superseded: r.include_superseded,
                order: Default::default(),
            },
            policy,
        ))
    }

    /// A campaign from a start request, its dates checked: missing dates
    /// come from the policy, else today and 30 and 90 days later.
    pub(crate) fn new_campaign(
        &self,
        r: &v1::StartCampaignRequest,
    ) -> Result<crate::campaign::Campaign, Status> {
        let bad = |m: String| Status::invalid_argument(m);
        if r.name.trim().is_empty() {
            return Err(bad("a campaign needs a name".into()));
        }
        let policy = self.0.catalog.policy(&r.policy).ok_or_else(|| {
            bad(format!(
                "no policy {:?} in the catalog (see muster catalog list)",
                r.policy
            ))
        })?;
        let date = |flag: &str, given: &str, from_policy: Option<&str>, default: i64| {
            let text = if given.is_empty() {
                from_policy.unwrap_or("")
            } else {
                given
            };
            if text.is_empty() {
                return Ok(default);
            }
            day_of(text).ok_or_else(|| bad(format!("{flag} {text:?} is not a date (YYYY-MM-DD)")))
        };
        let today = now() - now().rem_euclid(86_400);
        let issued = date("--issued", &r.issued, Some(policy.issued.as_str()), today)?;
        let identify_by = date(
            "--identify-by",
            &r.identify_by,
            policy.identify_by.as_deref(),
            issued + 30 * 86_400,
        )?;
        let remove_by = date(
            "--remove-by",
            &r.remove_by,
            policy.remove_by.as_deref(),
            issued + 90 * 86_400,
        )?;
        if identify_by < issued {
            return Err(bad("--identify-by comes before the issue date".into()));
        }
        if remove_by < identify_by {
            return Err(bad(
                "--remove-by comes before --identify-by: products cannot have to be gone before they must be found".into(),
            ));
        }
        Ok(crate::campaign::Campaign {
            name: r.name.trim().to_string(),
            policy: policy.id.clone(),
            issued,
            identify_by,
            remove_by,
        })
    }

    /// Coverage of the asset list by the hosts that report.
    pub(crate) async fn coverage(&self) -> Result<crate::assets::Coverage, StoreError> {
        let hosts = self.0.store.host_list().await?;
        let assets = self.0.store.assets().await?;
        Ok(self.coverage_of(&assets, &hosts))
    }

    fn coverage_of(
        &self,
        assets: &[crate::assets::Asset],
        hosts: &[crate::store::HostBrief],
    ) -> crate::assets::Coverage {
        let stale_before = self.stale_before();
        let agents: Vec<crate::assets::AgentHost> = hosts
            .iter()
            .map(|h| crate::assets::AgentHost {
                ips: serde_json::from_str(&h.ips).unwrap_or_default(),
                stale: h.last_checkin.unwrap_or(h.enrolled_at) < stale_before,
                last_checkin: h.last_checkin,
                id: h.id.clone(),
                hostname: h.hostname.clone(),
            })
            .collect();
        crate::assets::coverage(assets, &agents)
    }

    /// Where a campaign stands: its policy's banned products' episodes on
    /// every host, the hosts, and the assets without an agent.
    pub(crate) async fn campaign_status(
        &self,
        c: &crate::campaign::Campaign,
    ) -> Result<crate::campaign::CampaignStatus, StoreError> {
        let catalog = &self.0.catalog;
        let banned: Vec<String> = match catalog.policy(&c.policy) {
            Some(p) => catalog
                .products
                .iter()
                .filter(|x| p.bans(x))
                .map(|x| x.id.clone())
                .collect(),
            None => Vec::new(),
        };
        let episodes = self.0.store.episodes(&banned).await?;
        let stale_before = self.stale_before();
        let list = self.0.store.host_list().await?;
        let assets = self.0.store.assets().await?;
        let unseen: Vec<crate::campaign::UnknownAsset> = if assets.is_empty() {
            Vec::new()
        } else {
            self.coverage_of(&assets, &list)
                .assets_without_agent
                .into_iter()
                .map(|a| crate::campaign::UnknownAsset {
                    hostname: a.hostname,
                    owner: a.owner,
                    business_unit: a.business_unit,
                })
                .collect()
        };
        let hosts: Vec<crate::campaign::HostInfo> = list
            .into_iter()
            .map(|h| crate::campaign::HostInfo {
                os: format!("{} {}", h.os_name, h.os_version).trim().to_string(),
                stale: h.last_checkin.is_some_and(|t| t < stale_before),
                last_checkin: h.last_checkin,
                imported: h.imported != 0,
                id: h.id,
                hostname: h.hostname,
            })
            .collect();
        Ok(crate::campaign::status(
            c,
            &hosts,
            &episodes,
            &unseen,
            now(),
        ))
    }

    fn stale_before(&self) -> i64 {
        self.0.stale_before()
    }

    /// Up to `limit` hosts that `filter` selects and (with `policy`) that
    /// fail the policy, after the host `after` (hostname, id); and, when
    /// more follow, the position to continue from. A `violates` listing
    /// reads pages until it has found `limit` hosts or none are left.
    pub async fn hosts_matching(
        &self,
        filter: &HostFilter,
        policy: Option<&muster_catalog::Policy>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<(Vec<v1::HostSummary>, Option<(String, String)>), StoreError> {
        let mut found: Vec<HostRow> = Vec::new();
        let mut after = after;
        // One more than asked: whether it exists says whether more follow.
        let want = limit + 1;
        loop {
            let read = if policy.is_some() {
                HOSTS_PAGE
            } else {
                (want - found.len()) as u32
            };
            let page = self
                .0
                .store
                .hosts_page(
                    filter,
                    after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                    read,
                )
                .await?;
            let full = page.len() == read as usize;
            after = page.last().map(|h| (filter.order.key_of(h), h.id.clone()));
            for h in page {
                if policy.is_some_and(|p| passes(p, &h)) {
                    continue;
                }
                found.push(h);
                if found.len() == want {
                    break;
                }
            }
            if found.len() == want || !full {
                break;
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|h| (filter.order.key_of(h), h.id.clone()))
        } else {
            None
        };
        Ok((found.iter().map(|h| self.summary_of(h)).collect(), next))
    }

    /// The campaign of that name: a started one, or a policy of the
    /// catalog with a removal date (a campaign without starting it).
    pub(crate) async fn find_campaign(
        &self,
        name: &str,
    ) -> Result<Option<crate::campaign::Campaign>, StoreError> {
        if let Some(c) = self.0.store.campaign(name).await? {
            return Ok(Some(c));
        }
        Ok(self
            .new_campaign(&v1::StartCampaignRequest {
                name: name.to_string(),
                policy: name.to_string(),
                ..Default::default()
            })
            .ok()
            .filter(|_| {
                self.0
                    .catalog
                    .policy(name)
                    .is_some_and(|p| p.remove_by.is_some())
            }))
    }

    /// Every campaign: those started, then the catalog's policies with a
    /// removal date not started under their own name; `true` when started.
    pub async fn all_campaigns(
        &self,
    ) -> Result<Vec<(crate::campaign::Campaign, bool)>, StoreError> {
        let mut out: Vec<_> = self
            .0
            .store
            .campaigns()
            .await?
            .into_iter()
            .map(|c| (c, true))
            .collect();
        for p in &self.0.catalog.policies {
            if p.remove_by.is_some()
                && !out.iter().any(|(c, _)| c.name == p.id)
                && let Some(c) = self.find_campaign(&p.id).await?
            {
                out.push((c, false));
            }
        }
        Ok(out)
    }

    /// The SIEM exporters' state (`muster siem status --format json`).
    pub(crate) async fn siem_status(&self) -> Result<serde_json::Value, StoreError> {
        let st = &self.0;
        let stored = st.store.exporters().await?;
        let now = now();
        let mut exporters = Vec::new();
        // Configured exporters first (with their target), then any the
        // database still has from an earlier config.
        for spec in &st.exporters {
            let s = stored.iter().find(|s| s.name == spec.name);
            exporters.push(siem_status_entry(&spec.name, Some(spec), s, now));
        }
        for s in stored
            .iter()
            .filter(|s| !st.exporters.iter().any(|e| e.name == s.name))
        {
            exporters.push(siem_status_entry(&s.name, None, Some(s), now));
        }
        Ok(serde_json::json!({
            "retention": st.config.siem_retention,
            "exporters": exporters,
        }))
    }

    pub(crate) fn summary_of(&self, h: &HostRow) -> v1::HostSummary {
        let catalog = &self.0.catalog;
        let mut banned = BTreeSet::new();
        for d in &h.detections {
            if let Some(p) = catalog.product(&d.detection.product_id)
                && !catalog.banned_by(p).is_empty()
            {
                banned.insert(d.detection.product_id.clone());
            }
        }
        v1::HostSummary {
            id: h.id.clone(),
            hostname: h.facts.hostname.clone(),
            os: format!("{} {}", h.facts.os_name, h.facts.os_version)
                .trim()
                .to_string(),
            last_checkin: h.last_checkin.unwrap_or(0),
            enrolled_at: h.enrolled_at,
            detections: h
                .detections
                .iter()
                .map(|d| detection_to_wire(&d.detection))
                .collect(),
            sequence: h.last_sequence,
            stale: h.last_checkin.unwrap_or(h.enrolled_at) < self.stale_before(),
            banned: banned.into_iter().collect(),
            imported: h.imported,
            revoked_at: h.revoked_at.unwrap_or(0),
            superseded_by: h
                .superseded
                .as_ref()
                .map(|s| s.0.clone())
                .unwrap_or_default(),
            superseded_at: h.superseded.as_ref().map_or(0, |s| s.1),
        }
    }
}

type HostStream = Pin<Box<dyn Stream<Item = Result<v1::HostSummary, Status>> + Send>>;

#[tonic::async_trait]
impl v1::operator_server::Operator for OperatorService {
    type ListHostsStream = HostStream;

    async fn list_hosts(
        &self,
        req: Request<v1::ListHostsRequest>,
    ) -> Result<Response<HostStream>, Status> {
        let who = peer(&req)?;
        let r = req.into_inner();
        let (filter, policy) = self.host_filter(&r)?;
        tracing::info!(operator = %who.id, filter = ?r, "hosts listed");
        // Pages of hosts are read and sent as the client takes them: the
        // whole fleet is never in memory at once.
        let (tx, rx) = tokio::sync::mpsc::channel(2 * HOSTS_PAGE as usize);
        let me = OperatorService(self.0.clone());
        tokio::spawn(async move {
            let mut after: Option<(String, String)> = None;
            loop {
                let page =
                    me.0.store
                        .hosts_page(
                            &filter,
                            after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                            HOSTS_PAGE,
                        )
                        .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                };
                let full = page.len() == HOSTS_PAGE as usize;
                after = page.last().map(|h| (filter.order.key_of(h), h.id.clone()));
                for h in page {
                    if policy.as_ref().is_some_and(|p| passes(p, &h)) {
                        continue;
                    }
                    if tx.send(Ok(me.summary_of(&h))).await.is_err() {
                        return; // the client went away
                    }
                }
                if !full {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_host(
        &self,
        req: Request<v1::GetHostRequest>,
    ) -> Result<Response<v1::HostDetail>, Status> {
        let who = peer(&req)?;
        let id = req.into_inner().id;
        let (h, sections, agent) = self
            .0
            .store
            .host(&id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no host with id {id:?}")))?;
        let timeline = self
            .0
            .store
            .timeline(&id, TIMELINE_SHOWN)
            .await
            .map_err(internal)?;
        tracing::info!(operator = %who.id, host = %id, "host read");
        let catalog = &self.0.catalog;
        Ok(Response::new(v1::HostDetail {
            host: Some(self.summary_of(&h)),
            facts: Some(facts_to_wire(&h.facts)),
            sections: sections
                .into_iter()
                .map(|s| v1::SectionSummary {
                    name: s.name,
                    digest: s.digest,
                    items: s.items,
                    updated_at: s.updated_at,
                })
                .collect(),
            detections: h
                .detections
                .iter()
                .map(|d| v1::DetectionRecord {
                    detection: Some(detection_to_wire(&d.detection)),
                    first_seen: d.first_seen,
                    last_seen: d.last_seen,
                    removed_at: d.removed_at.unwrap_or(0),
                    banned_by: catalog
                        .product(&d.detection.product_id)
                        .map(|p| catalog.banned_by(p))
                        .unwrap_or_default(),
                })
                .collect(),
            certificate_serial: h.cert_serial.clone(),
            agent_detections: agent.iter().map(detection_to_wire).collect(),
            timeline: timeline
                .into_iter()
                .map(|e| {
                    // Names from the event's own detection: what was true
                    // when it happened, even if the catalog changed since.
                    let (vendor, product, category) = e
                        .detection
                        .map(|d| (d.vendor, d.product, d.category.as_str().to_string()))
                        .unwrap_or_default();
                    v1::HostEvent {
                        id: e.id,
                        at: e.at,
                        kind: e.kind,
                        product_id: e.product_id,
                        vendor,
                        product,
                        category,
                        state: e.state,
                        previous_state: e.previous_state,
                        version: e.version,
                        related_host: e.related_host,
                    }
                })
                .collect(),
        }))
    }

    async fn import_snapshot(
        &self,
        req: Request<v1::ImportRequest>,
    ) -> Result<Response<v1::ImportResponse>, Status> {
        let who = peer(&req)?;
        let st = &self.0;
        let r = req.into_inner();
        let bad = |m: String| Status::invalid_argument(m);
        let facts = facts_from_wire(r.facts.unwrap_or_default()).map_err(|e| bad(e.0))?;
        if facts.hostname.trim().is_empty() {
            return Err(bad("the snapshot names no hostname".into()));
        }
        let mut sections = BTreeMap::new();
        for s in r.sections {
            let (name, section) = section_from_wire(s).map_err(|e| bad(e.0))?;
            if section.items.len() > st.config.max_section_items {
                return Err(bad(format!(
                    "section {name:?} has {} items, more than the {} accepted",
                    section.items.len(),
                    st.config.max_section_items
                )));
            }
            if sections.insert(name.clone(), section).is_some() {
                return Err(bad(format!("section {name:?} appears twice")));
            }
        }
        let catalog = &st.catalog;
        let outcome = st
            .store
            .import(&facts, sections, r.collected_at, &catalog.digest, |inv| {
                evaluate(inv, catalog)
            })
            .await
            .map_err(internal)?;
        match outcome {
            ImportOutcome::Stored {
                host_id,
                created,
                detections,
            } => {
                tracing::info!(operator = %who.id, host = %host_id, hostname = %facts.hostname, created, detections, "snapshot imported");
                Ok(Response::new(v1::ImportResponse {
                    host_id,
                    created,
                    detections: detections as u32,
                }))
            }
            ImportOutcome::Older {
                host_id,
                last_checkin,
            } => Err(Status::failed_precondition(format!(
                "host {host_id} ({}) already has a newer report (from {}) than this snapshot (taken {}); nothing changed",
                facts.hostname,
                rfc3339(last_checkin),
                rfc3339(r.collected_at)
            ))),
        }
    }

    async fn import_assets(
        &self,
        req: Request<v1::ImportAssetsRequest>,
    ) -> Result<Response<v1::ImportAssetsResponse>, Status> {
        let who = peer(&req)?;
        let r = req.into_inner();
        let mut seen = BTreeSet::new();
        let mut assets = Vec::with_capacity(r.assets.len());
        for a in r.assets {
            if a.hostname.trim().is_empty() {
                return Err(Status::invalid_argument(format!(
                    "line {}: empty hostname",
                    a.line
                )));
            }
            if !seen.insert(a.hostname.to_ascii_lowercase()) {
                return Err(Status::invalid_argument(format!(
                    "line {}: hostname {:?} is listed twice",
                    a.line, a.hostname
                )));
            }
            assets.push(crate::assets::Asset {
                hostname: a.hostname,
                ip: a.ip,
                owner: a.owner,
                business_unit: a.business_unit,
                line: a.line as usize,
            });
        }
        self.0
            .store
            .replace_assets(&assets)
            .await
            .map_err(internal)?;
        tracing::info!(operator = %who.id, assets = assets.len(), "asset list replaced");
        Ok(Response::new(v1::ImportAssetsResponse {
            assets: assets.len() as u32,
        }))
    }

    async fn get_coverage(
        &self,
        req: Request<v1::CoverageRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        let who = peer(&req)?;
        let coverage = self.coverage().await.map_err(internal)?;
        tracing::info!(operator = %who.id, "coverage read");
        Ok(Response::new(v1::JsonDocument {
            json: serde_json::to_string(&coverage).map_err(|e| Status::internal(e.to_string()))?,
            catalog_version: self.0.catalog.version.clone(),
        }))
    }

    async fn get_siem_status(
        &self,
        req: Request<v1::SiemStatusRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        let who = peer(&req)?;
        let doc = self.siem_status().await.map_err(internal)?;
        tracing::info!(operator = %who.id, "SIEM status read");
        Ok(Response::new(v1::JsonDocument {
            json: doc.to_string(),
            catalog_version: self.0.catalog.version.clone(),
        }))
    }

    async fn test_exporter(
        &self,
        req: Request<v1::TestExporterRequest>,
    ) -> Result<Response<v1::TestExporterResponse>, Status> {
        let who = peer(&req)?;
        let name = req.into_inner().name;
        let st = &self.0;
        let Some(spec) = st.exporters.iter().find(|e| e.name == name) else {
            let known: Vec<&str> = st.exporters.iter().map(|e| e.name.as_str()).collect();
            return Err(Status::not_found(format!(
                "no exporter named {name:?} in this collector's config (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let event = crate::siem::test_event(&name, &st.observer, now());
        crate::siem::export::send_test(spec, &event)
            .await
            .map_err(|e| Status::unavailable(format!("exporter {name:?}: {e}")))?;
        tracing::info!(operator = %who.id, exporter = %name, event = %event.id, "test event sent");
        Ok(Response::new(v1::TestExporterResponse {
            event_id: event.id,
        }))
    }

    async fn create_enrollment_token(
        &self,
        req: Request<v1::CreateEnrollmentTokenRequest>,
    ) -> Result<Response<v1::CreateEnrollmentTokenResponse>, Status> {
        let who = peer(&req)?;
        let r = req.into_inner();
        if !(1..=1_000_000).contains(&r.uses) {
            return Err(Status::invalid_argument(
                "uses must be between 1 and 1000000",
            ));
        }
        if !(60..=30 * 86_400).contains(&r.valid_seconds) {
            return Err(Status::invalid_argument(
                "valid_seconds must be between 60 and 2592000 (30 days)",
            ));
        }
        let token = new_token();
        let expires_at = crate::store::now() + i64::from(r.valid_seconds);
        self.0
            .store
            .create_token(&token_hash(&token), expires_at, r.uses)
            .await
            .map_err(internal)?;
        tracing::info!(operator = %who.id, uses = r.uses, expires_at, "enrollment token created");
        Ok(Response::new(v1::CreateEnrollmentTokenResponse {
            token,
            expires_at,
        }))
    }

    async fn revoke_host(
        &self,
        req: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        let who = peer(&req)?;
        let id = req.into_inner().host_id;
        let st = &self.0;
        let Some((host, _, _)) = st.store.host(&id).await.map_err(internal)? else {
            return Err(Status::not_found(format!("no host with id {id:?}")));
        };
        st.store.revoke_host(&id).await.map_err(internal)?;
        tracing::warn!(operator = %who.id, host = %id, hostname = %host.facts.hostname, "host revoked");
        Ok(Response::new(v1::RevokeHostResponse {
            host_id: id,
            hostname: host.facts.hostname,
        }))
    }

    async fn start_campaign(
        &self,
        req: Request<v1::StartCampaignRequest>,
    ) -> Result<Response<v1::CampaignInfo>, Status> {
        let who = peer(&req)?;
        let r = req.into_inner();
        let c = self.new_campaign(&r)?;
        if !self.0.store.create_campaign(&c).await.map_err(internal)? {
            return Err(Status::already_exists(format!(
                "a campaign named {:?} exists already; `muster campaign status {}` shows it",
                c.name, c.name
            )));
        }
        tracing::info!(operator = %who.id, campaign = %c.name, policy = %c.policy, "campaign started");
        Ok(Response::new(campaign_info(&c)))
    }

    async fn get_campaign_status(
        &self,
        req: Request<v1::CampaignStatusRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        let who = peer(&req)?;
        let name = req.into_inner().name;
        // A built-in policy with dates is a campaign without starting it.
        let c = self
            .find_campaign(&name)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no campaign named {name:?} (start one with muster campaign start {name} --policy POLICY)"
                ))
            })?;
        let status = self.campaign_status(&c).await.map_err(internal)?;
        tracing::info!(operator = %who.id, campaign = %c.name, affected = status.counts.affected, "campaign status read");
        Ok(Response::new(v1::JsonDocument {
            json: serde_json::to_string(&status).map_err(|e| Status::internal(e.to_string()))?,
            catalog_version: self.0.catalog.version.clone(),
        }))
    }

    async fn summary(
        &self,
        req: Request<v1::SummaryRequest>,
    ) -> Result<Response<v1::FleetSummary>, Status> {
        let who = peer(&req)?;
        let catalog = &self.0.catalog;
        let banned = self.0.banned_products();
        let store = &self.0.store;
        let counts = store
            .fleet_counts(self.stale_before(), &banned)
            .await
            .map_err(internal)?;
        let per_product = store.product_counts().await.map_err(internal)?;
        let pending = store
            .pending_evaluation(&catalog.digest)
            .await
            .map_err(internal)?;
        tracing::info!(operator = %who.id, "summary read");
        let mut out = v1::FleetSummary {
            hosts: counts.hosts,
            reporting: counts.reporting,
            stale: counts.stale,
            never_reported: counts.never_reported,
            hosts_with_banned: counts.with_banned,
            catalog_version: catalog.version.clone(),
            pending_reevaluation: pending,
            imported: counts.imported,
            ..Default::default()
        };
        for (id, n) in per_product {
            let p = catalog.product(&id);
            out.products.push(v1::ProductCount {
                product_id: id.clone(),
                vendor: p.map(|p| p.vendor.clone()).unwrap_or_default(),
                product: p.map(|p| p.name.clone()).unwrap_or_default(),
                category: p
                    .map(|p| p.category.as_str().to_string())
                    .unwrap_or_default(),
                hosts: n,
                banned: p.is_some_and(|p| !catalog.banned_by(p).is_empty()),
            });
        }
        Ok(Response::new(out))
    }
}

/// Unix seconds of UTC midnight of a `YYYY-MM-DD` date.
fn day_of(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(text.trim(), &format).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

/// `YYYY-MM-DD` of a Unix time.
fn date_of(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| d.date().to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn campaign_info(c: &crate::campaign::Campaign) -> v1::CampaignInfo {
    v1::CampaignInfo {
        name: c.name.clone(),
        policy: c.policy.clone(),
        issued: date_of(c.issued),
        identify_by: date_of(c.identify_by),
        remove_by: date_of(c.remove_by),
    }
}

/// Starts the campaigns of the config file that do not exist yet. A
/// campaign whose policy or dates are wrong stops the collector from
/// starting, naming it.
pub async fn start_configured_campaigns(state: &Arc<State>) -> anyhow::Result<()> {
    let op = OperatorService(state.clone());
    for c in &state.config.campaign {
        let campaign = op
            .new_campaign(&v1::StartCampaignRequest {
                name: c.name.clone(),
                policy: c.policy.clone(),
                issued: c.issued.clone(),
                identify_by: c.identify_by.clone(),
                remove_by: c.remove_by.clone(),
            })
            .map_err(|e| anyhow::anyhow!("campaign {:?} in the config: {}", c.name, e.message()))?;
        if state.store.create_campaign(&campaign).await? {
            tracing::info!(campaign = %campaign.name, policy = %campaign.policy, "campaign started from the config");
        }
    }
    Ok(())
}

/// Hosts re-evaluated per batch in the background.
const REEVALUATE_BATCH: u32 = 500;

/// Re-evaluates, in the background, every stored inventory that was last
/// evaluated with another catalog (a new signature, a new ban): no agent has
/// to scan again. Changes become events like any other; progress goes to
/// the log. Returns when none is left (or the store fails, which is logged).
pub async fn reevaluate_all(state: Arc<State>) {
    let catalog = &state.catalog;
    let pending = match state.store.pending_evaluation(&catalog.digest).await {
        Ok(0) => return,
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot count the inventories to re-evaluate");
            return;
        }
    };
    tracing::info!(catalog = %catalog.version, hosts = pending, "re-evaluating stored inventories with this catalog");
    let started = std::time::Instant::now();
    // PostgreSQL: two workers (locked hosts are skipped, so they share the
    // work); SQLite has one writer at a time anyway.
    let workers = if state.store.backend() == "postgres" {
        2
    } else {
        1
    };
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (state, done, changes) = (state.clone(), done.clone(), changes.clone());
        tasks.push(tokio::spawn(async move {
            let catalog = &state.catalog;
            let mut after = String::new();
            loop {
                let batch = state
                    .store
                    .reevaluate(&catalog.digest, &after, REEVALUATE_BATCH, |inv| {
                        evaluate(inv, catalog)
                    })
                    .await;
                match batch {
                    Ok(b) if b.hosts == 0 => return true,
                    Ok(b) => {
                        after = b.last;
                        state.metrics.reevaluated(b.hosts as u64);
                        let d = done.fetch_add(b.hosts as u64, Ordering::Relaxed) + b.hosts as u64;
                        let e = changes.fetch_add(b.events as u64, Ordering::Relaxed) + b.events as u64;
                        tracing::info!(done = d, of = pending, changes = e, "re-evaluating stored inventories");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "re-evaluation stopped; it resumes at the next start");
                        return false;
                    }
                }
            }
        }));
    }
    let mut ok = true;
    for t in tasks {
        ok &= t.await.unwrap_or(false);
    }
    if !ok {
        return;
    }
    let (hosts, events) = (
        done.load(Ordering::Relaxed),
        changes.load(Ordering::Relaxed),
    );
    tracing::info!(
        hosts,
        changes = events,
        seconds = started.elapsed().as_secs_f64(),
        "re-evaluation finished"
    );
}

/// One exporter of `muster siem status`'s JSON.
fn siem_status_entry(
    name: &str,
    spec: Option<&crate::siem::export::Spec>,
    s: Option<&crate::store::ExporterStatus>,
    now: i64,
) -> serde_json::Value {
    use crate::siem::export::Target;
    let (kind, address) = match spec.map(|s| &s.target) {
        Some(Target::Syslog {
            transport,
            host,
            port,
        }) => ("syslog", format!("{transport}://{host}:{port}")),
        Some(Target::Http { url, .. }) => ("http", url.clone()),
        Some(Target::File { path, .. }) => ("file", path.display().to_string()),
        None => ("", String::new()),
    };
    let state = match (spec, s) {
        (None, _) => "not configured",
        (Some(_), None) => "not started",
        (Some(_), Some(s)) if !s.last_error.is_empty() => "failing",
        (Some(_), Some(s)) if s.lag > 0 => "behind",
        _ => "ok",
    };
    serde_json::json!({
        "name": name,
        "kind": kind,
        "address": address,
        "format": spec.map(|s| s.format.as_str()).unwrap_or(""),
        "state": state,
        "lag_events": s.map(|s| s.lag).unwrap_or(0),
        "lag_seconds": s.and_then(|s| s.oldest_waiting_at).map(|t| (now - t).max(0)).unwrap_or(0),
        "delivered": s.map(|s| s.sent).unwrap_or(0),
        "dropped": s.map(|s| s.dropped).unwrap_or(0),
        "last_sent_at": s.and_then(|s| s.last_sent_at).map(rfc3339),
        "last_error": s.map(|s| s.last_error.as_str()).filter(|e| !e.is_empty()),
        "last_error_at": s.filter(|s| !s.last_error.is_empty()).and_then(|s| s.last_error_at).map(rfc3339),
        "owner": s.map(|s| s.owner.as_str()).filter(|o| !o.is_empty()),
        "cursor": s.map(|s| s.cursor.seq).unwrap_or(0),
    })
}
