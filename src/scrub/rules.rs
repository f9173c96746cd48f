//! Rule data: the built-in content rules and the names that mark a secret.
//!
//! Content rules are gated by literal prefixes found in one aho-corasick pass;
//! only the candidate rule's regex runs, on a window at the hit. Formats follow
//! the public rule sets of gitleaks (MIT), Nosey Parker (Apache-2.0) and
//! detect-secrets (Apache-2.0), and the vendors' published token formats.

/// Extra validation a content match must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The format is distinctive enough on its own.
    None,
    /// Must not be a placeholder (`xxxx`, `<token>`, `0000`).
    NotPlaceholder,
    /// Must look generated (entropy, mixed classes) and not be a placeholder.
    Random,
    /// A JWT: the header segment decodes to a JSON header.
    Jwt,
    /// A GitHub token: CRC32 checksum valid, or else random-looking.
    GithubCrc,
    /// Base64 text whose decoding holds a PEM private-key header.
    Base64Pem,
    /// From byte `.0` on, base64 whose decoding starts with `.1`.
    Base64Prefix(u8, &'static [u8]),
}

/// One content rule, as data.
#[derive(Clone, Copy, Debug)]
pub struct RuleSpec {
    /// Kind in markers and metrics.
    pub kind: &'static str,
    /// Literals that gate the rule (case-sensitive).
    pub prefixes: &'static [&'static str],
    /// The secret's regex. With `back == 0` it is anchored at the hit.
    pub regex: &'static str,
    /// How far before the hit the secret may start (for formats whose literal is inside).
    pub back: usize,
    /// Longest secret the rule can match.
    pub max_len: usize,
    /// The byte before the secret must not be `[A-Za-z0-9_]`.
    pub left_boundary: bool,
    /// The byte after the secret must not be `[A-Za-z0-9]`.
    pub right_boundary: bool,
    pub check: Check,
}

const fn r(
    kind: &'static str,
    prefixes: &'static [&'static str],
    regex: &'static str,
    max_len: usize,
    check: Check,
) -> RuleSpec {
    RuleSpec { kind, prefixes, regex, back: 0, max_len, left_boundary: true, right_boundary: true, check }
}

const fn back(
    kind: &'static str,
    prefixes: &'static [&'static str],
    regex: &'static str,
    back: usize,
    max_len: usize,
    check: Check,
) -> RuleSpec {
    RuleSpec { kind, prefixes, regex, back, max_len, left_boundary: true, right_boundary: true, check }
}

/// A rule whose literal is context (a vendor name, a call, a keyword) and may sit inside an
/// identifier: the secret is the regex's capture group 1.
const fn ctx(
    kind: &'static str,
    prefixes: &'static [&'static str],
    regex: &'static str,
    max_len: usize,
    check: Check,
) -> RuleSpec {
    RuleSpec { kind, prefixes, regex, back: 0, max_len, left_boundary: false, right_boundary: true, check }
}

/// What may stand between a vendor name used as a key and its value: the rest of the key,
/// a closing quote (plain or JSON-escaped), `=`, `:`, `:=`, `=>` or `,`, an opening quote.
macro_rules! keyed {
    ($tail:literal, $value:literal) => {
        concat!($tail, r#"(?:\\?["'])?[ \t]{0,4}(?::=|=>|[:=,])[ \t]{0,4}(?:\\?["'`])?"#, "(", $value, ")")
    };
}

use Check::*;

/// Every built-in content rule.
pub const CONTENT_RULES: &[RuleSpec] = &[
    // JSON Web Tokens (and JWE): header.payload.signature, header must decode to JSON.
    // An unsigned token (two segments) counts when its payload is JSON too.
    r(
        "jwt",
        &["eyJ"],
        r"^eyJ[A-Za-z0-9_-]{8,}={0,2}\.(?:[A-Za-z0-9_-]{4,}={0,2}\.[A-Za-z0-9_+/=-]*(?:\.[A-Za-z0-9_-]+){0,2}|eyJ[A-Za-z0-9_-]{8,}={0,2})",
        16384,
        Jwt,
    ),
    // GitHub: classic tokens carry a CRC32 in their last 6 base62 characters.
    r("github_token", &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], r"^gh[pousr]_[A-Za-z0-9]{36,251}", 255, GithubCrc),
    r("github_token", &["github_pat_"], r"^github_pat_[A-Za-z0-9_]{50,244}", 255, Random),
    // GitLab.
    r("gitlab_token", &["glpat-"], r"^glpat-[A-Za-z0-9_.-]{20,300}", 306, NotPlaceholder),
    r(
        "gitlab_token",
        &["gldt-", "glrt-", "glft-", "glsoat-", "glffct-"],
        r"^gl(?:dt|rt|ft|soat|ffct)-[A-Za-z0-9_.-]{20,300}",
        310,
        NotPlaceholder,
    ),
    r("gitlab_token", &["glptt-"], r"^glptt-[0-9A-Za-z_-]{40}", 46, NotPlaceholder),
    r("gitlab_token", &["glcbt-"], r"^glcbt-[0-9a-fA-F]{1,5}_[0-9A-Za-z_-]{20}", 32, NotPlaceholder),
    r("gitlab_token", &["glimt-"], r"^glimt-[0-9A-Za-z_-]{25}", 31, NotPlaceholder),
    r("gitlab_token", &["glagent-"], r"^glagent-[0-9A-Za-z_-]{50}", 58, NotPlaceholder),
    r("gitlab_token", &["gloas-"], r"^gloas-[0-9A-Za-z_-]{64}", 70, NotPlaceholder),
    r("gitlab_token", &["GR1348941"], r"^GR1348941[0-9A-Za-z_-]{20,}", 128, NotPlaceholder),
    // Slack tokens and webhooks.
    r(
        "slack_token",
        &["xoxb-", "xoxp-", "xoxe-", "xoxa-", "xoxr-", "xoxo-", "xoxs-", "xoxc-", "xoxe."],
        r"^(?:xoxb-[0-9]{8,14}-[0-9A-Za-z-]{10,}|xox[pe](?:-[0-9]{10,13}){3}-[A-Za-z0-9-]{28,34}|xoxe\.xox[bp]-\d-[A-Za-z0-9]{120,180}|xoxe-\d-[A-Za-z0-9]{120,180}|xox[aeoprs]-(?:\d-)?(?:[0-9]{5,}-){2,}[0-9A-Za-z]{8,}|xox[ar]-(?:\d-)?[0-9A-Za-z]{8,48}|xox[os]-\d+-\d+-\d+-[a-fA-F\d]+|xoxc-[0-9]{8,14}-[0-9A-Za-z-]{10,})",
        256,
        NotPlaceholder,
    ),
    r("slack_token", &["xapp-"], r"^xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+", 256, None),
    r(
        "slack_webhook",
        &["hooks.slack.com/"],
        r"^hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_]{20,100}",
        140,
        NotPlaceholder,
    ),
    // Stripe secret and restricted keys.
    r(
        "stripe_key",
        &["sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_"],
        r"^[rs]k_(?:live|test|prod)_[A-Za-z0-9]{10,247}",
        255,
        NotPlaceholder,
    ),
    // An AWS key id followed within a word or two by its 40-character secret key
    // (`AKIA… secret wJalr…`, `AKIA…:wJalr…`): one span, key id and secret together. Before
    // the key-id rule, which would otherwise take the key id alone and leave the secret.
    r(
        "aws_secret_key",
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r#"^(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}[ \t,;:=/|"']{1,4}(?:[A-Za-z_]{1,24}[ \t]{0,2}[:=]?[ \t]{0,2}["']?)?[A-Za-z0-9/+]{40}"#,
        120,
        None,
    ),
    // AWS access key ids (long-lived AKIA, temporary ASIA, ...).
    r(
        "aws_access_key",
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"^(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
        20,
        None,
    ),
    r("aws_bedrock_key", &["ABSK"], r"^ABSK[A-Za-z0-9+/]{109,269}={0,2}", 280, Random),
    r(
        "aws_bedrock_key",
        &["bedrock-api-key-"],
        r"^bedrock-api-key-[A-Za-z0-9+/]{20,}={0,2}",
        2048,
        Base64Prefix(16, b"bedrock.amazonaws.com"),
    ),
    // Google.
    r("gcp_api_key", &["AIza"], r"^AIza[0-9A-Za-z_-]{35}", 39, None),
    r("gcp_oauth_secret", &["GOCSPX-"], r"^GOCSPX-[A-Za-z0-9_-]{28}", 35, None),
    r("gcp_access_token", &["ya29."], r"^ya29\.[0-9A-Za-z_-]{20,2048}", 2053, NotPlaceholder),
    r("gcp_refresh_token", &["1//0"], r"^1//0[0-9A-Za-z_-]{35,512}", 520, Random),
    // Private keys: PEM blocks are parsed by hand (see content.rs); base64-wrapped PEM and age here.
    r("private_key", &["LS0tLS1CRUdJTi"], r"^LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2}", 16384, Base64Pem),
    r("private_key", &["AGE-SECRET-KEY-1"], r"^AGE-SECRET-KEY-1[0-9A-Z]{58}", 74, None),
    // Azure AD client secrets: three characters, a digit, `Q~`, then 31-34.
    back("azure_client_secret", &["Q~"], r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}", 4, 36, None),
    // Twilio API keys, SendGrid, npm, PyPI.
    r("twilio_key", &["SK"], r"^SK[0-9a-fA-F]{32}", 34, Random),
    r("sendgrid_key", &["SG."], r"^SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", 69, None),
    r("npm_token", &["npm_"], r"^npm_[A-Za-z0-9]{36}", 40, Random),
    // The macaroon prefix is distinctive enough to match after any byte (`secrets.pypi-…`).
    ctx(
        "pypi_token",
        &["pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"],
        r"^(pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})",
        512,
        None,
    ),
    // AI providers.
    r(
        "openai_key",
        &["sk-"],
        r"^sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,200}T3BlbkFJ[A-Za-z0-9_-]{20,200}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|(?:proj|svcacct|admin)-[A-Za-z0-9_-]{80,250})",
        320,
        None,
    ),
    r("anthropic_key", &["sk-ant-"], r"^sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,110}AA", 130, None),
    r("openrouter_key", &["sk-or-v1-"], r"^sk-or-v1-[a-f0-9]{64}", 73, None),
    r("huggingface_token", &["hf_"], r"^hf_[A-Za-z]{34}", 37, Random),
    r("huggingface_token", &["api_org_"], r"^api_org_[A-Za-z]{34}", 42, Random),
    r("groq_key", &["gsk_"], r"^gsk_[A-Za-z0-9]{52}", 56, Random),
    r("tavily_key", &["tvly-"], r"^tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}", 42, Random),
    r("jina_key", &["jina_"], r"^jina_[A-Za-z0-9_-]{60}", 65, Random),
    r("perplexity_key", &["pplx-"], r"^pplx-[A-Za-z0-9]{48}", 53, Random),
    // HashiCorp.
    r("vault_token", &["hvs.", "hvb.", "hvr."], r"^hv[sbr]\.[A-Za-z0-9_-]{24,}", 512, Random),
    back("terraform_token", &[".atlasv1."], r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}", 14, 94, Random),
    // Developer platforms.
    r("digitalocean_token", &["dop_v1_", "doo_v1_", "dor_v1_"], r"^do[opr]_v1_[a-f0-9]{64}", 71, None),
    r("dockerhub_token", &["dckr_pat_", "dckr_oat_"], r"^dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,}", 64, Random),
    r(
        "doppler_token",
        &["dp.pt.", "dp.ct.", "dp.st.", "dp.sa.", "dp.scim.", "dp.audit."],
        r"^dp\.(?:pt|ct|st|sa|scim|audit)\.[A-Za-z0-9._-]{40,}",
        128,
        Random,
    ),
    r("square_token", &["sq0atp-", "sq0csp-"], r"^sq0(?:atp|csp)-[0-9A-Za-z_-]{22,60}", 67, Random),
    r("facebook_or_square_token", &["EAA"], r"^EAA[A-Za-z0-9_-]{40,400}", 403, Random),
    r("shopify_token", &["shpat_", "shpca_", "shppa_", "shpss_"], r"^shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", 38, None),
    r("grafana_token", &["glc_"], r"^glc_[A-Za-z0-9+/]{32,400}={0,2}", 406, Random),
    r("grafana_token", &["glsa_"], r"^glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", 46, None),
    r("grafana_token", &["eyJrIjoi"], r"^eyJrIjoi[A-Za-z0-9]{70,400}={0,2}", 410, None),
    r("sentry_token", &["sntrys_", "sntryu_"], r"^sntry[su]_[A-Za-z0-9+/=_]{60,}", 1024, None),
    r("notion_token", &["ntn_"], r"^ntn_[0-9]{11}[A-Za-z0-9]{32,35}", 50, Random),
    r(
        "newrelic_key",
        &["NRAK-", "NRII-", "NRRA-", "NRJS-", "NRAA-", "NRIQ-"],
        r"^NR(?:AK|II|RA|JS|AA|IQ)-[A-Za-z0-9_-]{27,42}",
        47,
        Random,
    ),
    back("newrelic_key", &["NRAL"], r"[A-Za-z0-9]{36}NRAL", 36, 40, None),
    r("newrelic_key", &["px-api-", "px-dep-"], r"^px-(?:api|dep)-[a-f0-9-]{36}", 43, None),
    r("flyio_token", &["fo1_"], r"^fo1_[A-Za-z0-9_-]{43}", 47, Random),
    r(
        "flyio_token",
        &["fm1r_", "fm1a_", "fm2_"],
        r"^fm(?:1[ar]|2)_[A-Za-z0-9+/]{100,}={0,3}(?:,fm2_[A-Za-z0-9+/]{20,}={0,3})*",
        16384,
        None,
    ),
    r("atlassian_token", &["ATATT3", "ATCTT3"], r"^AT[AC]TT3[A-Za-z0-9_=-]{150,}", 512, None),
    r("databricks_token", &["dapi"], r"^dapi[a-f0-9]{32}(?:-[0-9])?", 38, None),
    r("nuget_key", &["oy2"], r"^oy2[a-z0-9]{43}", 46, Random),
    r("rubygems_key", &["rubygems_"], r"^rubygems_[a-f0-9]{48}", 57, None),
    r("sonar_token", &["squ_", "sqp_", "sqa_"], r"^sq[upa]_[A-Za-z0-9]{40}", 44, NotPlaceholder),
    r(
        "sourcegraph_token",
        &["sgp_"],
        r"^sgp_(?:(?:[A-Fa-f0-9]{16}|local)_[A-Fa-f0-9]{40}|[A-Fa-f0-9]{40}|[A-Za-z0-9]{64})",
        68,
        NotPlaceholder,
    ),
    r("dependency_track_key", &["odt_"], r"^odt_[A-Za-z0-9]{32,}", 128, Random),
    r("twitch_stream_key", &["live_"], r"^live_[0-9]{6,10}_[A-Za-z0-9]{30}", 48, None),
    r("mailgun_key", &["key-"], r"^key-[a-f0-9]{32}", 36, Random),
    back("mailchimp_key", &["-us"], r"[a-f0-9]{32}-us[0-9]{1,2}", 32, 37, None),
    r("heroku_key", &["HRKU-"], r"^HRKU-[A-Za-z0-9_-]{58,}", 128, Random),
    r("infracost_key", &["ico-"], r"^ico-[A-Za-z0-9]{32}", 36, Random),
    r("openshift_token", &["sha256~"], r"^sha256~[A-Za-z0-9_-]{43}", 50, Random),
    r("onepassword_token", &["ops_eyJ"], r"^ops_eyJ[A-Za-z0-9+/_-]{200,}={0,3}", 16384, None),
    r(
        "onepassword_secret_key",
        &["A3-"],
        r"^A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
        40,
        None,
    ),
    r("intra42_secret", &["s-s4t2ud-", "s-s4t2af-"], r"^s-s4t2(?:ud|af)-[a-f0-9]{64}", 73, None),
    r("dynatrace_token", &["dt0c01."], r"^dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}", 96, None),
    r("pulumi_token", &["pul-"], r"^pul-[a-f0-9]{40}", 44, None),
    r("readme_key", &["rdme_"], r"^rdme_[a-z0-9]{70}", 75, None),
    r("scalingo_token", &["tk-us-"], r"^tk-us-[A-Za-z0-9_-]{48}", 54, Random),
    r(
        "planetscale_token",
        &["pscale_tkn_", "pscale_pw_", "pscale_oauth_"],
        r"^pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}",
        80,
        Random,
    ),
    r("linear_key", &["lin_api_"], r"^lin_api_[A-Za-z0-9]{40}", 48, Random),
    r("postman_key", &["PMAK-"], r"^PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}", 64, None),
    r("clojars_token", &["CLOJARS_"], r"^CLOJARS_[a-z0-9]{60}", 68, None),
    r("easypost_key", &["EZAK", "EZTK"], r"^EZ[AT]K[A-Za-z0-9]{54}", 58, Random),
    r("prefect_key", &["pnu_"], r"^pnu_[A-Za-z0-9]{36}", 40, Random),
    r("mapbox_token", &["sk.eyJ", "tk.eyJ"], r"^[st]k\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}", 512, None),
    r("stackhawk_key", &["hawk."], r"^hawk\.[0-9A-Za-z_-]{20}\.[0-9A-Za-z_-]{20}", 46, Random),
    r("adafruit_key", &["aio_"], r"^aio_[A-Za-z0-9]{28}", 32, Random),
    r("artifactory_key", &["AKCp"], r"^AKCp[A-Za-z0-9]{69}", 73, None),
    r("artifactory_key", &["cmVmdGtu"], r"^cmVmdGtu[A-Za-z0-9]{56}", 64, None),
    r("cloudflare_ca_key", &["v1.0-"], r"^v1\.0-[a-f0-9]{24}-[a-f0-9]{146}", 176, None),
    back("maxmind_key", &["_mmk"], r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk", 36, 40, None),
    r("clickhouse_key", &["4b1d"], r"^4b1d[A-Za-z0-9]{38}", 42, Random),
    r("octopus_key", &["API-"], r"^API-[A-Z0-9]{26}", 30, Random),
    back("telegram_bot_token", &[":AA"], r"[0-9]{8,10}:AA[A-Za-z0-9_-]{32,35}", 10, 48, None),
    r("aws_appsync_key", &["da2-"], r"^da2-[a-z0-9]{26}", 30, Random),
    // Microsoft Teams incoming webhooks, old (`outlook.office.com/webhook/`) and new
    // (`<tenant>.webhook.office.com/webhookb2/`, with a trailing signature segment): the whole URL.
    back(
        "msteams_webhook",
        &[".office.com/webhook/", ".webhook.office.com/webhookb2/"],
        r"https?://(?:outlook\.office\.com/webhook|[a-z0-9-]{1,63}\.webhook\.office\.com/webhookb2)/[0-9a-f-]{36}(?:@|%40|%2540)[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36}(?:/[A-Za-z0-9_-]{20,80})?",
        72,
        330,
        None,
    ),
    // Azure DevOps PATs (2024 format): 84 characters with `AZDO` at offset 76.
    back("azure_devops_token", &["AZDO"], r"[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}", 76, 84, None),
    // The older 52-character base32 PATs have no marker: only under an Azure DevOps PAT name.
    back(
        "azure_devops_token",
        &[
            "_pat\"", "_pat'", "_pat\\", "_pat=", "_pat:", "_pat ", "_PAT\"", "_PAT'", "_PAT=", "_PAT:", "_PAT ",
            "-pat\"", "-pat=",
        ],
        keyed!(r"(?i:ado|devops)[A-Za-z0-9_.-]{0,20}(?i:[_-]pat)", r"[a-z2-7]{52}"),
        40,
        120,
        NotPlaceholder,
    ),
    // Password hashes, by their modular-crypt `$id$` prefix and exact shapes (hashcat / passlib
    // formats): md5crypt and Apache apr1, bcrypt, sha256crypt, sha512crypt, Cisco type 8/9,
    // scrypt, yescrypt, Argon2, PBKDF2 (passlib and Django), Kerberos AS-REP / TGS-REP / pre-auth.
    r("password_hash", &["$1$", "$apr1$"], r"^\$(?:1|apr1)\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}", 40, None),
    r("password_hash", &["$2a$", "$2b$", "$2x$", "$2y$"], r"^\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53}", 60, None),
    r(
        "password_hash",
        &["$5$", "$6$"],
        r"^\$(?:5\$(?:rounds=[0-9]{1,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}|6\$(?:rounds=[0-9]{1,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86})",
        130,
        None,
    ),
    r("password_hash", &["$8$", "$9$"], r"^\$[89]\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43}", 62, None),
    r("password_hash", &["$7$"], r"^\$7\$[./A-Za-z0-9]{11,64}\$[./A-Za-z0-9]{43}", 120, None),
    r("password_hash", &["$y$"], r"^\$y\$[./A-Za-z0-9]{1,24}\$[./A-Za-z0-9]{1,86}\$[./A-Za-z0-9]{43}", 160, None),
    r(
        "password_hash",
        &["$argon2id$", "$argon2i$", "$argon2d$"],
        r"^\$argon2(?:id|i|d)\$(?:v=[0-9]{1,3}\$)?m=[0-9]{1,8},t=[0-9]{1,4},p=[0-9]{1,3}\$[A-Za-z0-9+/]{8,}\$[A-Za-z0-9+/]{16,}",
        300,
        None,
    ),
    r(
        "password_hash",
        &["$pbkdf2"],
        r"^\$pbkdf2(?:-sha(?:1|256|512))?\$[0-9]{1,7}\$[./A-Za-z0-9+]{4,}\$[./A-Za-z0-9+]{20,}",
        300,
        None,
    ),
    r(
        "password_hash",
        &["pbkdf2_sha1$", "pbkdf2_sha256$"],
        r"^pbkdf2_sha(?:1|256)\$[0-9]{4,7}\$[A-Za-z0-9]{4,64}\$[A-Za-z0-9+/]{27,}={0,2}",
        200,
        None,
    ),
    r(
        "password_hash",
        &["$krb5asrep$", "$krb5tgs$", "$krb5pa$"],
        r"^\$krb5(?:asrep\$(?:23\$(?:[^:$\s]{1,256}:)?[a-f0-9]{32}|1[78]\$[^$\s]{1,256}\$[^$\s]{1,256}\$[a-f0-9]{24})\$[a-f0-9]{64,}|tgs\$(?:23\$\*[^*\s]{1,512}\*\$[a-f0-9]{32}|1[78]\$[^$\s]{1,256}\$[^$\s]{1,256}(?:\$\*[^*\s]{1,512}\*)?\$[a-f0-9]{24})\$[a-f0-9]{64,}|pa\$(?:23|1[78])\$[^$\s]{0,256}\$[^$\s]{0,256}\$(?:[^$\s]{0,256}\$)?[a-f0-9]{64,})",
        16384,
        None,
    ),
    // More vendor tokens with distinctive prefixes (gitleaks, Nosey Parker and vendor docs).
    r("cratesio_token", &["cio"], r"^cio[A-Za-z0-9]{32}", 35, Random),
    r("alibaba_key", &["LTAI"], r"^LTAI[A-Za-z0-9]{20}", 24, Random),
    r("tencent_key", &["AKID"], r"^AKID[A-Za-z0-9]{32}", 36, Random),
    r("bitbucket_token", &["ATBB"], r"^ATBB[A-Za-z0-9_=.-]{32,}", 128, Random),
    r("contentful_token", &["CFPAT-"], r"^CFPAT-[A-Za-z0-9_-]{43}", 49, Random),
    r("defined_networking_key", &["dnkey-"], r"^dnkey-[a-z0-9=_-]{26}-[a-z0-9=_-]{52}", 85, None),
    r("duffel_token", &["duffel_test_", "duffel_live_"], r"^duffel_(?:test|live)_[A-Za-z0-9_=-]{43}", 55, Random),
    r("flutterwave_key", &["FLWSECK"], r"^FLWSECK(?:_TEST)?-[a-h0-9]{32}-X", 48, None),
    r("frameio_token", &["fio-u-"], r"^fio-u-[A-Za-z0-9_=-]{64}", 70, Random),
    r("harness_token", &["pat."], r"^pat\.[A-Za-z0-9_-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}", 72, None),
    r("netlify_token", &["nfp_"], r"^nfp_[A-Za-z0-9]{36}", 40, Random),
    r("brevo_key", &["xkeysib-", "xsmtpsib-"], r"^x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}", 90, None),
    r("shippo_token", &["shippo_live_", "shippo_test_"], r"^shippo_(?:live|test)_[a-f0-9]{40}", 52, None),
    r("stripe_webhook_secret", &["whsec_"], r"^whsec_[A-Za-z0-9+/]{32,}={0,2}", 128, Random),
    r("typeform_token", &["tfp_"], r"^tfp_[A-Za-z0-9_.=-]{59}", 63, Random),
    r("yandex_key", &["AQVN"], r"^AQVN[A-Za-z0-9_-]{35,38}", 42, Random),
    r("replicate_token", &["r8_"], r"^r8_[A-Za-z0-9]{37}", 40, Random),
    r("langsmith_key", &["lsv2_pt_", "lsv2_sk_"], r"^lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}", 51, None),
    r(
        "hubspot_token",
        &["pat-na1-", "pat-eu1-"],
        r"^pat-(?:na|eu)1-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}",
        44,
        None,
    ),
    r("packagist_token", &["packagist_"], r"^packagist_[ou][ur]t_[a-f0-9]{68}", 82, None),
    r("supabase_token", &["sbp_"], r"^sbp_[a-f0-9]{40}", 44, None),
    r("supabase_token", &["sb_secret_"], r"^sb_secret_[A-Za-z0-9_-]{31,}", 80, Random),
    r("render_key", &["rnd_"], r"^rnd_[A-Za-z0-9]{32}", 36, Random),
    r("buildkite_token", &["bkua_"], r"^bkua_[a-f0-9]{40}", 45, None),
    r("circleci_token", &["CCIPAT_"], r"^CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}", 70, None),
    r("pinecone_key", &["pcsk_"], r"^pcsk_[A-Za-z0-9_]{50,}", 120, Random),
    r("xai_key", &["xai-"], r"^xai-[A-Za-z0-9]{80}", 84, Random),
    r("figma_token", &["figd_"], r"^figd_[A-Za-z0-9_-]{40}", 45, Random),
    r("dropbox_token", &["sl."], r"^sl\.(?:u\.)?[A-Za-z0-9_-]{130,1200}", 1210, Random),
    r("notion_token", &["secret_"], r"^secret_[A-Za-z0-9]{43}", 50, Random),
    r("langfuse_key", &["sk-lf-"], r"^sk-lf-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", 42, None),
    r(
        "discord_webhook",
        &["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"],
        r"^discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}",
        120,
        None,
    ),
    r("zapier_webhook", &["hooks.zapier.com/"], r"^hooks\.zapier\.com/hooks/catch/[0-9]+/[A-Za-z0-9]{5,}", 80, None),
    // Vault unseal keys as `vault operator init` prints them and as `vault operator unseal` takes them.
    ctx("vault_unseal_key", &["Unseal Key "], r"^Unseal Key [0-9]{1,2}: ([A-Za-z0-9+/]{43,44}={0,2})", 72, None),
    ctx(
        "vault_unseal_key",
        &["operator unseal "],
        r"^operator unseal\s+(?:-[a-z-]+\s+)*([A-Za-z0-9+/]{43,44}={0,2})",
        120,
        NotPlaceholder,
    ),
    // Credentials passed to well-known calls and tools.
    ctx(
        "password",
        &["NetworkCredential("],
        r#"^NetworkCredential\(\s*\\?"[^"\\]{0,128}\\?"\s*,\s*\\?"([^"\\]{1,128})\\?""#,
        300,
        NotPlaceholder,
    ),
    ctx(
        "password",
        &["DirectoryEntry("],
        r#"^DirectoryEntry\(\s*\\?"[^"\\]{0,256}\\?"\s*,(?:\s|\\[nrt])*\\?"[^"\\]{0,128}\\?"\s*,(?:\s|\\[nrt])*\\?"([^"\\]{1,128})\\?""#,
        600,
        NotPlaceholder,
    ),
    ctx(
        "password",
        &["psexec", "PsExec", "PSEXEC", "Psexec", "psExec"],
        r#"^(?i:psexec)(?:\.exe)?\s[^\n|&]{0,200}?\s-p\s+(\\?"[^"\\]{1,128}\\?"|[^\s"\\]{1,128})"#,
        360,
        None,
    ),
    ctx(
        "password",
        &["Connect-VIServer", "connect-viserver"],
        r#"^(?i:connect-viserver)\s[^\n|;]{0,200}?\s(?i:-password)\s+(\\?"[^"\\]{1,128}\\?"|'[^']{1,128}'|[^\s"\\']{1,128})"#,
        360,
        None,
    ),
    ctx(
        "api_key",
        &["auth.login_with_api_key"],
        r#"^auth\.login_with_api_key\\?"[^\[]{0,48}\[(?:\s|\\[nrt])*\\?"([0-9]{1,6}-[A-Za-z0-9]{64})\\?""#,
        180,
        None,
    ),
    // A .NET / ODBC connection string with a password: host, database, user and password
    // together are the credential, so the whole run of `key=value;` pairs is masked.
    r(
        "connection_string",
        &["Server=", "server=", "SERVER=", "Data Source=", "Data source=", "data source="],
        r#"^(?i:server|data source)\s*=[^;"'\n\\]*(?:;[^;"'\n\\=]{1,40}=[^;"'\n\\]*)*?;\s*(?i:password|pwd)\s*=[^;"'\n\\{$<%][^;"'\n\\]*(?:;[^;"'\n\\=]{1,40}=[^;"'\n\\]*)*;?"#,
        600,
        None,
    ),
    // Salesforce session ids: the 15-character org id (`00D…`), `!`, the session part.
    r("salesforce_token", &["00D"], r"^00D[A-Za-z0-9]{12}![A-Za-z0-9._]{80,100}", 120, None),
    // ThingsBoard's device API carries the device token in the path on any host.
    ctx(
        "thingsboard_token",
        &["/api/v1/"],
        r"^/api/v1/([A-Za-z0-9]{16,40})/(?:telemetry|attributes|rpc|claim|firmware|software)\b",
        80,
        Random,
    ),
    ctx("jenkins_crumb", &["Jenkins-Crumb"], r"^Jenkins-Crumb\s*[:=]\s*([0-9a-f]{32,64})", 90, None),
    ctx(
        "api_key",
        &["password to proceed to installation"],
        r"^password to proceed to installation:?(?:\s|\\[nrt])*([0-9a-f]{32})",
        120,
        None,
    ),
    // Vendor names as keys, with the value shape the vendor issues.
    ctx(
        "facebook_token",
        &["facebook", "Facebook", "FACEBOOK"],
        r"^(?i:facebook)[^\n]{0,40}?\b([0-9]{15,16}(?:\||%7C)[A-Za-z0-9_-]{27,40})",
        120,
        NotPlaceholder,
    ),
    ctx(
        "codeclimate_key",
        &["CC_TEST_REPORTER_ID", "codeclimate", "CodeClimate", "CODECLIMATE"],
        keyed!(r"^(?i:cc_test_reporter_id|codeclimate[A-Za-z0-9_.-]{0,24})", r"[a-f0-9]{64}"),
        120,
        None,
    ),
    ctx("sidekiq_secret", &["CONTRIBSYS__COM"], keyed!(r"^CONTRIBSYS__COM", r"[a-f0-9]{8}:[a-f0-9]{8}"), 60, None),
    ctx(
        "sumologic_key",
        &["sumo", "Sumo", "SUMO"],
        keyed!(r"^(?i:sumo)[A-Za-z0-9_.-]{0,24}", r"su[A-Za-z0-9]{12}"),
        70,
        Random,
    ),
    ctx(
        "okta_token",
        &["okta", "Okta", "OKTA"],
        r"^(?i:okta)[^\n]{0,60}?(?:\n[^\n]{0,60}?)?\b(00[A-Za-z0-9_-]{40})(?:[^A-Za-z0-9_-]|$)",
        120,
        Random,
    ),
    ctx(
        "sourcegraph_token",
        &["sourcegraph", "Sourcegraph", "SOURCEGRAPH"],
        keyed!(r"^(?i:sourcegraph)[A-Za-z0-9_.-]{0,24}", r"[a-fA-F0-9]{40}"),
        90,
        Random,
    ),
    ctx(
        "cloudant_key",
        &["cloudant", "Cloudant", "CLOUDANT"],
        keyed!(r"^(?i:cloudant)[A-Za-z0-9_.-]{0,24}", r"[a-f0-9]{64}|[a-z]{24}"),
        120,
        NotPlaceholder,
    ),
    ctx(
        "softlayer_key",
        &["softlayer", "Softlayer", "SoftLayer", "SOFTLAYER"],
        r#"^(?i:softlayer)[A-Za-z0-9_.-]{0,24}(?:\\?["'])?(?:[ \t]{0,4}(?::=|=>|[:=,])[ \t]{0,4}|[ \t]{1,4})(?:\\?["'])?([a-z0-9]{64})"#,
        120,
        NotPlaceholder,
    ),
    ctx(
        "sonar_token",
        &["sonar.login", "SONAR_TOKEN", "sonar.token", "SONAR_LOGIN"],
        keyed!(r"^(?i:sonar[._](?:login|token))", r"[a-f0-9]{40}"),
        80,
        None,
    ),
    ctx(
        "postmark_token",
        &["postmark", "Postmark", "POSTMARK"],
        keyed!(
            r"^(?i:postmark(?:[_.-]?(?:server|account|api))?(?:[_.-]?(?:token|key))?)",
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
        ),
        90,
        None,
    ),
    ctx(
        "messagebird_key",
        &["MessageBird", "MESSAGEBIRD", "Messagebird"],
        keyed!(
            r"^(?i:message[_-]?bird(?:[_.-]?(?:client|api|access))?(?:[_.-]?(?:id|key|token))?)",
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9]{25}"
        ),
        90,
        NotPlaceholder,
    ),
    ctx(
        "heroku_key",
        &["heroku", "Heroku", "HEROKU"],
        keyed!(
            r"^(?i:heroku(?:[_.-]?(?:api|oauth|auth))?[_.-]?(?:key|token))",
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
        ),
        90,
        None,
    ),
];

/// How a name found in the line is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// `Authorization`: keep the scheme word, replace the credentials.
    Authorization,
    /// `Cookie` / `Set-Cookie`: replace session-like cookie values.
    Cookie,
    /// Replace any value that is not a placeholder.
    Always(&'static str),
    /// Replace the value only if it looks generated (entropy, mixed classes).
    IfRandom(&'static str),
}

/// Exact names (lower-case, `-` and `.` read as `_`) and how they are treated.
pub const EXACT_NAMES: &[(&str, NameRule)] = &[
    ("authorization", NameRule::Authorization),
    ("proxy_authorization", NameRule::Authorization),
    ("http_authorization", NameRule::Authorization),
    ("cookie", NameRule::Cookie),
    ("set_cookie", NameRule::Cookie),
    ("http_cookie", NameRule::Cookie),
    ("x_api_key", NameRule::Always("api_key")),
    ("api_key", NameRule::Always("api_key")),
    ("apikey", NameRule::Always("api_key")),
    ("x_apikey", NameRule::Always("api_key")),
    ("api_token", NameRule::Always("token")),
    ("x_auth_token", NameRule::Always("token")),
    ("x_access_token", NameRule::Always("token")),
    ("access_token", NameRule::Always("token")),
    ("refresh_token", NameRule::Always("token")),
    ("id_token", NameRule::Always("token")),
    ("auth_token", NameRule::Always("token")),
    ("oauth_token", NameRule::Always("token")),
    ("private_token", NameRule::Always("token")),
    ("session_token", NameRule::Always("session_token")),
    ("x_vault_token", NameRule::Always("vault_token")),
    ("x_goog_api_key", NameRule::Always("gcp_api_key")),
    ("ocp_apim_subscription_key", NameRule::Always("api_key")),
    ("subscription_key", NameRule::Always("api_key")),
    ("x_functions_key", NameRule::Always("api_key")),
    ("client_secret", NameRule::Always("client_secret")),
    ("client_assertion", NameRule::Always("token")),
    ("password", NameRule::Always("password")),
    ("passwd", NameRule::Always("password")),
    ("pwd", NameRule::Always("password")),
    ("secret", NameRule::Always("secret")),
    ("jwt", NameRule::Always("jwt")),
    ("x_amz_signature", NameRule::Always("signature")),
    ("x_amz_security_token", NameRule::Always("aws_session_token")),
    ("aws_session_token", NameRule::Always("aws_session_token")),
    ("aws_secret_access_key", NameRule::Always("aws_secret_key")),
    ("secret_access_key", NameRule::Always("aws_secret_key")),
    ("aws_secret_key", NameRule::Always("aws_secret_key")),
    ("secretaccesskey", NameRule::Always("aws_secret_key")),
    ("accountkey", NameRule::IfRandom("azure_storage_key")),
    ("sharedaccesskey", NameRule::IfRandom("azure_storage_key")),
    ("private_key", NameRule::Always("private_key")),
    ("token", NameRule::IfRandom("token")),
    ("key", NameRule::IfRandom("api_key")),
    ("code", NameRule::IfRandom("oauth_code")),
    ("sig", NameRule::IfRandom("signature")),
    ("signature", NameRule::IfRandom("signature")),
];

/// Name components (or suffixes) that make a value a password: replaced unless a placeholder.
pub const PASSWORD_WORDS: &[&str] =
    &["password", "passwd", "pwd", "pass", "passphrase", "secret", "secrets", "secrete"];
/// Suffixes of a component that make it password-like (`clientsecret`, `dbpassword`).
pub const PASSWORD_SUFFIXES: &[&str] = &["password", "passwd", "secret"];
/// Components (or suffixes) that make a value a token: replaced if it looks generated.
pub const TOKEN_WORDS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "auth",
    "credential",
    "credentials",
    "cred",
    "creds",
    "sig",
    "signature",
    "session",
    "sessionid",
    "sessid",
    "jwt",
    "bearer",
    "login",
    "dsn",
    "cookie",
    // A personal access token (`ado_pat`, `GITLAB_PAT`); only generated-looking values count.
    "pat",
];
pub const TOKEN_SUFFIXES: &[&str] = &["token", "key", "apikey", "sessionid", "sessid", "signature"];

/// A last component that says the value is about a secret, not the secret.
pub const NON_SECRET_LAST: &[&str] = &[
    "id",
    "ids",
    "name",
    "names",
    "type",
    "types",
    "url",
    "uri",
    "urls",
    "path",
    "paths",
    "file",
    "filename",
    "endpoint",
    "size",
    "length",
    "len",
    "count",
    "expires",
    "expiry",
    "exp",
    "expiration",
    "expired",
    "ttl",
    "at",
    "time",
    "timeout",
    "hint",
    "label",
    "prefix",
    "suffix",
    "format",
    "field",
    "fields",
    "header",
    "headers",
    "policy",
    "provider",
    "method",
    "version",
    "enabled",
    "enable",
    "required",
    "reset",
    "mode",
    "kind",
    "fingerprint",
    "location",
    "source",
    "index",
    "template",
    "pattern",
    "regex",
    "param",
    "params",
    "rotation",
    "strength",
    "valid",
    "validation",
    "issuer",
    "audience",
    "scope",
    "scopes",
    "usage",
    "alg",
    "algorithm",
    "encoding",
    "min",
    "max",
    "status",
    "error",
    "errors",
    "reason",
    "message",
    "msg",
    "description",
    "desc",
    "title",
    "user",
    "username",
    "email",
    "date",
    "created",
    "updated",
    "last",
    "ref",
    "env",
    "var",
    "placeholder",
    "store",
    "manager",
    "service",
    "server",
    "host",
    "port",
    "dir",
    "folder",
    "class",
    "len",
    "bits",
    "str",
    "hash_alg",
    "rule",
    "rules",
    "check",
    "exists",
    "set",
    "list",
    "map",
    "count",
    "limit",
];
/// A component that says the value is not a secret whatever else the name says.
pub const NON_SECRET_QUALIFIERS: &[&str] = &[
    "public",
    "pub",
    "primary",
    "foreign",
    "sort",
    "partition",
    "cache",
    "idempotency",
    "dedup",
    "dedupe",
    "bucket",
    "object",
    "sequence",
    "routing",
    "row",
    "lookup",
    "group",
    "shard",
    "composite",
    "unique",
    "natural",
    "next",
    "prev",
    "previous",
    "page",
    "forgot",
    "reset",
    "confirm_url",
    "hotkey",
    "keyboard",
    "keypress",
    "keycode",
    "monkey",
    "turkey",
    "tokenizer",
    "author",
    "authority",
    "authored",
    "csrf_field",
    "pubkey",
    "publickey",
    "pressed",
    "keymeshing",
];

/// Cookie names that carry analytics ids, never credentials.
pub const ANALYTICS_COOKIE_PREFIXES: &[&str] = &[
    "_ga",
    "_gid",
    "_gat",
    "_gcl",
    "_fbp",
    "_fbc",
    "_hj",
    "ajs_",
    "amplitude",
    "mp_",
    "_clck",
    "_clsk",
    "__utm",
    "optimizely",
    "_uetsid",
    "_uetvid",
    "intercom-id",
    "_pk_",
    "_ttp",
];

/// Cookie names that are session credentials even without a secret word.
pub const SESSION_COOKIES: &[&str] = &[
    "phpsessid",
    "jsessionid",
    "connect.sid",
    "asp.net_sessionid",
    "sid",
    "ssid",
    "laravel_session",
    "_session_id",
    "sessionid",
    "session",
    "remember_token",
    "remember_user_token",
    "_forum_session",
    "aspxauth",
    ".aspxauth",
    "sess",
];

/// Words an `Authorization` value may start with before its credentials.
pub const AUTH_SCHEMES_WITH_PARAMS: &[&str] =
    &["digest", "aws4-hmac-sha256", "oauth", "signature", "hoba", "mutual", "gnap"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles_and_has_prefixes() {
        for r in CONTENT_RULES {
            assert!(!r.prefixes.is_empty(), "{}", r.kind);
            regex::bytes::Regex::new(r.regex).unwrap_or_else(|e| panic!("{}: {e}", r.kind));
            assert!(r.kind.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'), "{}", r.kind);
            if r.back == 0 {
                assert!(r.regex.starts_with('^'), "{} must be anchored", r.kind);
            }
        }
    }

    #[test]
    fn exact_names_are_normalised() {
        for (n, _) in EXACT_NAMES {
            assert_eq!(*n, n.to_ascii_lowercase());
            assert!(!n.contains('-'));
        }
    }
}
