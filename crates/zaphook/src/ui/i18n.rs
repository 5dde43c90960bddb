//! The dashboard's languages: English and Brazilian Portuguese, chosen by the `zaphook_lang`
//! cookie (set by the switch on every page) or else by the browser's `Accept-Language`.

use axum::extract::Query;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{cookie, cookie_value, local_path};

pub const LANG_COOKIE: &str = "zaphook_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "pt-br" | "pt" => Some(Lang::PtBr),
            _ => None,
        }
    }

    /// The cookie's choice, else the first of the browser's languages we speak.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(lang) = cookie_value(headers, LANG_COOKIE).and_then(|c| Lang::parse(&c)) {
            return lang;
        }
        let accepted = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        accepted
            .split(',')
            .filter_map(|part| part.split(';').next())
            .find_map(|code| {
                let code = code.trim().to_ascii_lowercase();
                if code.starts_with("pt") {
                    Some(Lang::PtBr)
                } else if code.starts_with("en") {
                    Some(Lang::En)
                } else {
                    None
                }
            })
            .unwrap_or(Lang::En)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::PtBr => &PT_BR,
        }
    }

    /// The other language, which the switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::PtBr,
            Lang::PtBr => Lang::En,
        }
    }
}

/// Every text the pages show, once per language (a missing one does not compile).
pub struct Texts {
    pub switch_language: &'static str,
    pub main_navigation: &'static str,
    pub sign_in: &'static str,
    pub sign_in_intro: &'static str,
    pub api_token: &'static str,
    pub api_token_help: &'static str,
    pub wrong_token: &'static str,
    pub sign_out: &'static str,
    pub form_expired: &'static str,
    pub not_found: &'static str,
    pub not_found_help: &'static str,
    pub endpoints: &'static str,
    pub no_endpoints: &'static str,
    pub add_endpoint: &'static str,
    pub url: &'static str,
    pub events: &'static str,
    pub description: &'static str,
    pub scope: &'static str,
    pub whole_company: &'static str,
    pub enabled: &'static str,
    pub disabled: &'static str,
    pub secret_once: &'static str,
    pub deliveries: &'static str,
    pub no_deliveries: &'static str,
    pub delivery: &'static str,
    pub event: &'static str,
    pub status: &'static str,
    pub attempts: &'static str,
    pub created: &'static str,
    pub next_attempt: &'static str,
    pub delivered_at: &'static str,
    pub payload: &'static str,
    pub at: &'static str,
    pub status_code: &'static str,
    pub latency: &'static str,
    pub error: &'static str,
    pub response: &'static str,
    pub no_attempts: &'static str,
    pub retry: &'static str,
    pub endpoint: &'static str,
    pub enable: &'static str,
    pub disable: &'static str,
    pub rotate_secret: &'static str,
    pub rotated_note: &'static str,
    pub send_test: &'static str,
    pub test_delivered: &'static str,
    pub test_failed: &'static str,
    pub form_expired_help: &'static str,
    pub connections: &'static str,
    pub no_connections: &'static str,
    pub channel: &'static str,
    pub state: &'static str,
    pub connected: &'static str,
    pub token_refused: &'static str,
    pub last_callback: &'static str,
    pub last_send_error: &'static str,
    pub never: &'static str,
    pub none: &'static str,
    pub callback_url: &'static str,
    pub verify_token: &'static str,
    pub for_meta: &'static str,
    pub health: &'static str,
    pub last_hour: &'static str,
    pub last_day: &'static str,
    pub success_rate: &'static str,
    pub latency_p50: &'static str,
    pub latency_p95: &'static str,
    pub waiting: &'static str,
    pub oldest_waiting: &'static str,
    pub chart_outcomes: &'static str,
    pub chart_latency: &'static str,
    pub chart_peak: &'static str,
    pub outcome_delivered: &'static str,
    pub outcome_failed: &'static str,
    pub outcome_dead: &'static str,
    pub edit_endpoint: &'static str,
    pub save: &'static str,
    pub cancel: &'static str,
    pub connection: &'static str,
    pub queue: &'static str,
    pub any_connection: &'static str,
    pub any_queue: &'static str,
    pub start_on_transfer: &'static str,
    pub filters: &'static str,
    pub filter_received: &'static str,
    pub filter_sent: &'static str,
    pub filter_groups: &'static str,
    pub filter_open: &'static str,
    pub filter_pending: &'static str,
    pub filter_media: &'static str,
    pub ordered: &'static str,
    pub conversations: &'static str,
    pub no_conversations: &'static str,
    pub all_statuses: &'static str,
    pub show: &'static str,
    pub ticket: &'static str,
    pub contact: &'static str,
    pub agent: &'static str,
    pub last_message: &'static str,
    pub older: &'static str,
    pub protocol: &'static str,
    pub timeline: &'static str,
    pub no_messages: &'static str,
    pub sent: &'static str,
    pub received: &'static str,
    pub edited: &'static str,
    pub deleted: &'static str,
    pub older_tickets: &'static str,
    pub activity: &'static str,
    pub filter: &'static str,
    // The delivery log and recoveries.
    pub delivery_log: &'static str,
    pub any_endpoint: &'static str,
    pub any_event: &'static str,
    pub any_status: &'static str,
    pub from_utc: &'static str,
    pub to_utc: &'static str,
    pub payload_text: &'static str,
    pub payload_text_help: &'static str,
    pub clear_filters: &'static str,
    pub newest: &'static str,
    pub searched_back_to: &'static str,
    pub search_on: &'static str,
    pub no_matches: &'static str,
    pub not_a_time: &'static str,
    pub not_a_number: &'static str,
    pub recover_failed: &'static str,
    pub recover_help: &'static str,
    pub since_utc: &'static str,
    pub recover: &'static str,
    pub recovery: &'static str,
    pub recent_recoveries: &'static str,
    pub started: &'static str,
    pub queued_again: &'static str,
    pub still_pending: &'static str,
    pub failed_again: &'static str,
    pub dead_again: &'static str,
    pub taken_later: &'static str,
    pub recovery_done: &'static str,
    pub see_failed: &'static str,
    pub headers_sent: &'static str,
    pub headers_not_kept: &'static str,
    pub headers_note: &'static str,
    pub delivered_count: &'static str,
}

const EN: Texts = Texts {
    switch_language: "Português",
    main_navigation: "Main",
    sign_in: "Sign in",
    sign_in_intro: "Sign in with one of your company's API tokens.",
    api_token: "API token",
    api_token_help: "The token zaphook printed when it created your company, or one made with zaphook token create.",
    wrong_token: "That token is not valid, or it was revoked.",
    sign_out: "Sign out",
    form_expired: "This form has expired",
    form_expired_help: "Go back, reload the page and send it again.",
    not_found: "Not found",
    not_found_help: "There is nothing of your company here.",
    endpoints: "Endpoints",
    no_endpoints: "No endpoints yet.",
    add_endpoint: "Add an endpoint",
    url: "URL",
    events: "Events",
    description: "Description",
    scope: "Scope",
    whole_company: "the whole company",
    enabled: "enabled",
    disabled: "disabled",
    secret_once: "Its signing secret, shown only now (keep it to verify signatures):",
    deliveries: "Deliveries",
    no_deliveries: "No deliveries yet.",
    delivery: "Delivery",
    event: "Event",
    status: "Status",
    attempts: "Attempts",
    created: "Created",
    next_attempt: "Next attempt",
    delivered_at: "Delivered",
    payload: "Payload",
    at: "At",
    status_code: "HTTP status",
    latency: "Latency",
    error: "Error",
    response: "Response",
    no_attempts: "Not attempted yet.",
    retry: "Send again now",
    endpoint: "Endpoint",
    enable: "Enable",
    disable: "Disable",
    rotate_secret: "Rotate the secret",
    rotated_note: "The previous secret signs beside it for 24 hours.",
    send_test: "Send a test event",
    test_delivered: "The test event was delivered",
    test_failed: "The test event failed",
    connections: "Connections",
    no_connections: "No connections yet. Create one with POST /api/v1/connections.",
    channel: "Channel",
    state: "State",
    connected: "connected",
    token_refused: "access token refused by Meta: update it",
    last_callback: "Last callback",
    last_send_error: "Last send error",
    never: "never",
    none: "none",
    callback_url: "Callback URL",
    verify_token: "Verify token",
    for_meta: "Paste both into Meta's console (WhatsApp › Configuration › Webhook).",
    health: "How it fares",
    last_hour: "Last hour",
    last_day: "Last 24 hours",
    success_rate: "Success rate",
    latency_p50: "Median latency",
    latency_p95: "95th percentile latency",
    waiting: "Waiting deliveries",
    oldest_waiting: "Oldest waiting for",
    chart_outcomes: "Attempts per 5 minutes over the last 6 hours",
    chart_latency: "Attempt latency per 5 minutes over the last 6 hours (median and 95th percentile)",
    chart_peak: "peak",
    outcome_delivered: "delivered",
    outcome_failed: "failed, to be retried",
    outcome_dead: "given up",
    edit_endpoint: "Change the endpoint",
    save: "Save",
    cancel: "Cancel",
    connection: "Connection",
    queue: "Queue",
    any_connection: "any connection",
    any_queue: "any queue",
    start_on_transfer: "With a queue: send the ticket's last message when the ticket enters the queue",
    filters: "Filters",
    filter_received: "Messages received",
    filter_sent: "Messages sent",
    filter_groups: "Group conversations",
    filter_open: "Messages of open tickets",
    filter_pending: "Messages of pending tickets",
    filter_media: "Media as base64 (mediaBase64, up to 16 MiB)",
    ordered: "One ticket's events arrive in order",
    conversations: "Conversations",
    no_conversations: "No conversations yet.",
    all_statuses: "all",
    show: "Show",
    ticket: "Ticket",
    contact: "Contact",
    agent: "Agent",
    last_message: "Last message",
    older: "Older deliveries",
    older_tickets: "Older tickets",
    activity: "Every endpoint's attempts",
    filter: "Filter",
    protocol: "Protocol",
    timeline: "Timeline",
    no_messages: "No messages yet.",
    sent: "sent",
    received: "received",
    edited: "edited",
    deleted: "deleted",
    delivery_log: "Delivery log",
    any_endpoint: "any endpoint",
    any_event: "any event",
    any_status: "any status",
    from_utc: "From (UTC)",
    to_utc: "Until (UTC)",
    payload_text: "Text in the payload",
    payload_text_help: "Exact and case-sensitive, e.g. a message id or a phone number.",
    clear_filters: "Clear the filter",
    newest: "Newest deliveries",
    searched_back_to: "Searched back to",
    search_on: "search further back",
    no_matches: "No deliveries match.",
    not_a_time: "is not a time",
    not_a_number: "is not a number",
    recover_failed: "Recover failed deliveries",
    recover_help: "Queues again every failed or dead delivery of the endpoint created since this time.",
    since_utc: "Since (UTC)",
    recover: "Recover",
    recovery: "Recovery",
    recent_recoveries: "Recent recoveries",
    started: "Started",
    queued_again: "Queued again",
    still_pending: "Still pending",
    failed_again: "Failed again (retried on the schedule)",
    dead_again: "Dead again",
    taken_later: "Queued again by a later recovery",
    recovery_done: "Every delivery of this recovery was delivered.",
    see_failed: "See the ones that failed again",
    headers_sent: "Headers sent",
    headers_not_kept: "not kept for this attempt (made before zaphook kept them)",
    headers_note: "The HTTP client adds Host, Content-Length and Accept.",
    delivered_count: "Delivered",
};

const PT_BR: Texts = Texts {
    switch_language: "English",
    main_navigation: "Principal",
    sign_in: "Entrar",
    sign_in_intro: "Entre com um dos tokens de API da sua empresa.",
    api_token: "Token de API",
    api_token_help: "O token que o zaphook mostrou ao criar sua empresa, ou um criado com zaphook token create.",
    wrong_token: "Esse token não é válido ou foi revogado.",
    sign_out: "Sair",
    form_expired: "Este formulário expirou",
    form_expired_help: "Volte, recarregue a página e envie de novo.",
    not_found: "Não encontrado",
    not_found_help: "Não há nada da sua empresa aqui.",
    endpoints: "Endpoints",
    no_endpoints: "Nenhum endpoint ainda.",
    add_endpoint: "Adicionar um endpoint",
    url: "URL",
    events: "Eventos",
    description: "Descrição",
    scope: "Escopo",
    whole_company: "a empresa toda",
    enabled: "ativo",
    disabled: "desativado",
    secret_once: "O segredo de assinatura, mostrado só agora (guarde-o para verificar as assinaturas):",
    deliveries: "Entregas",
    no_deliveries: "Nenhuma entrega ainda.",
    delivery: "Entrega",
    event: "Evento",
    status: "Situação",
    attempts: "Tentativas",
    created: "Criada",
    next_attempt: "Próxima tentativa",
    delivered_at: "Entregue",
    payload: "Payload",
    at: "Quando",
    status_code: "Status HTTP",
    latency: "Latência",
    error: "Erro",
    response: "Resposta",
    no_attempts: "Nenhuma tentativa ainda.",
    retry: "Enviar de novo agora",
    endpoint: "Endpoint",
    enable: "Ativar",
    disable: "Desativar",
    rotate_secret: "Trocar o segredo",
    rotated_note: "O segredo anterior assina junto por 24 horas.",
    send_test: "Enviar um evento de teste",
    test_delivered: "O evento de teste foi entregue",
    test_failed: "O evento de teste falhou",
    connections: "Conexões",
    no_connections: "Nenhuma conexão ainda. Crie uma com POST /api/v1/connections.",
    channel: "Canal",
    state: "Estado",
    connected: "conectada",
    token_refused: "token de acesso recusado pela Meta: atualize-o",
    last_callback: "Último callback",
    last_send_error: "Último erro de envio",
    never: "nunca",
    none: "nenhum",
    callback_url: "URL de callback",
    verify_token: "Token de verificação",
    for_meta: "Cole os dois no painel da Meta (WhatsApp › Configuração › Webhook).",
    health: "Como está indo",
    last_hour: "Última hora",
    last_day: "Últimas 24 horas",
    success_rate: "Taxa de sucesso",
    latency_p50: "Latência mediana",
    latency_p95: "Latência do percentil 95",
    waiting: "Entregas na fila",
    oldest_waiting: "A mais antiga espera há",
    chart_outcomes: "Tentativas a cada 5 minutos nas últimas 6 horas",
    chart_latency: "Latência das tentativas a cada 5 minutos nas últimas 6 horas (mediana e percentil 95)",
    chart_peak: "pico",
    outcome_delivered: "entregues",
    outcome_failed: "falharam, serão repetidas",
    outcome_dead: "abandonadas",
    edit_endpoint: "Alterar o endpoint",
    save: "Salvar",
    cancel: "Cancelar",
    connection: "Conexão",
    queue: "Fila",
    any_connection: "qualquer conexão",
    any_queue: "qualquer fila",
    start_on_transfer: "Com uma fila: enviar a última mensagem do ticket quando ele entra na fila",
    filters: "Filtros",
    filter_received: "Mensagens recebidas",
    filter_sent: "Mensagens enviadas",
    filter_groups: "Conversas de grupo",
    filter_open: "Mensagens de tickets abertos",
    filter_pending: "Mensagens de tickets pendentes",
    filter_media: "Mídia em base64 (mediaBase64, até 16 MiB)",
    ordered: "Os eventos de um ticket chegam em ordem",
    conversations: "Conversas",
    no_conversations: "Nenhuma conversa ainda.",
    all_statuses: "todos",
    show: "Mostrar",
    ticket: "Ticket",
    contact: "Contato",
    agent: "Atendente",
    last_message: "Última mensagem",
    older: "Entregas mais antigas",
    older_tickets: "Tickets mais antigos",
    activity: "Tentativas de todos os endpoints",
    filter: "Filtrar",
    protocol: "Protocolo",
    timeline: "Linha do tempo",
    no_messages: "Nenhuma mensagem ainda.",
    sent: "enviada",
    received: "recebida",
    edited: "editada",
    deleted: "apagada",
    delivery_log: "Registro de entregas",
    any_endpoint: "qualquer endpoint",
    any_event: "qualquer evento",
    any_status: "qualquer situação",
    from_utc: "De (UTC)",
    to_utc: "Até (UTC)",
    payload_text: "Texto no payload",
    payload_text_help: "Exato, diferencia maiúsculas, p. ex. um id de mensagem ou um telefone.",
    clear_filters: "Limpar o filtro",
    newest: "Entregas mais recentes",
    searched_back_to: "Pesquisado até",
    search_on: "pesquisar mais para trás",
    no_matches: "Nenhuma entrega corresponde.",
    not_a_time: "não é uma data e hora",
    not_a_number: "não é um número",
    recover_failed: "Recuperar entregas com falha",
    recover_help: "Coloca de novo na fila toda entrega com falha ou morta do endpoint criada desde esse momento.",
    since_utc: "Desde (UTC)",
    recover: "Recuperar",
    recovery: "Recuperação",
    recent_recoveries: "Recuperações recentes",
    started: "Iniciada",
    queued_again: "Colocadas de novo na fila",
    still_pending: "Ainda pendentes",
    failed_again: "Falharam de novo (tentadas de novo no cronograma)",
    dead_again: "Mortas de novo",
    taken_later: "Recolocadas por uma recuperação posterior",
    recovery_done: "Todas as entregas desta recuperação foram entregues.",
    see_failed: "Ver as que falharam de novo",
    headers_sent: "Cabeçalhos enviados",
    headers_not_kept: "não guardados para esta tentativa (feita antes de o zaphook guardá-los)",
    headers_note: "O cliente HTTP acrescenta Host, Content-Length e Accept.",
    delivered_count: "Entregues",
};

#[derive(Debug, Deserialize)]
pub struct Switch {
    to: String,
    back: Option<String>,
}

/// `GET /ui/lang?to=pt-BR&back=/ui/connections`: remembers the choice and goes back.
pub async fn switch(Query(query): Query<Switch>) -> Response {
    let lang = Lang::parse(&query.to).unwrap_or(Lang::En);
    let back = query
        .back
        .as_deref()
        .and_then(local_path)
        .unwrap_or("/ui/connections")
        .to_string();
    // A preference, kept for a year.
    let set = cookie(LANG_COOKIE, lang.code(), 365 * 24 * 3600, false);
    ([(header::SET_COOKIE, set)], Redirect::to(&back)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        headers
    }

    #[test]
    fn the_cookie_wins_then_the_browsers_languages_in_order() {
        assert_eq!(Lang::of(&HeaderMap::new()), Lang::En);
        assert_eq!(
            Lang::of(&with("accept-language", "pt-BR,pt;q=0.9,en;q=0.8")),
            Lang::PtBr
        );
        assert_eq!(
            Lang::of(&with("accept-language", "de-DE,en-US;q=0.7,pt;q=0.5")),
            Lang::En
        );
        assert_eq!(Lang::of(&with("accept-language", "fr")), Lang::En);
        assert_eq!(
            Lang::of(&with("cookie", "a=b; zaphook_lang=pt-BR")),
            Lang::PtBr
        );
    }
}
