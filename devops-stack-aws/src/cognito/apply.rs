//! The Cognito API calls of the [`Cognito`] module: apply, read and destroy.

use std::collections::BTreeMap;

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, AttributeType, DeliveryMediumType, OAuthFlowType, UserPoolType,
    VerifiedAttributeType,
};
use devops_stack_core::{Context, Secret};

use super::{Cognito, CognitoOidc, MODULE_TAG, Pool, SCOPES, STACK_TAG, group_marker};
use crate::config::region_of;
use crate::error::{Error, Result, is_not_found};

struct Api {
    client: Client,
    region: String,
}

async fn api(cognito: &Cognito) -> Result<Api> {
    let sdk = cognito.aws.load().await?;
    Ok(Api {
        client: cognito.aws.cognito_client(&sdk),
        region: region_of(&sdk),
    })
}

/// A pool found or created, and whether the module owns it.
struct FoundPool {
    pool: UserPoolType,
    owned: bool,
}

impl FoundPool {
    fn id(&self) -> &str {
        self.pool.id().unwrap_or_default()
    }
}

async fn describe_pool(api: &Api, resource: &str, id: &str) -> Result<Option<UserPoolType>> {
    match api
        .client
        .describe_user_pool()
        .user_pool_id(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.user_pool),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::aws("describing the user pool", resource, e)),
    }
}

/// The module's pool: the adopted one, or the one it created (found by name and tags).
async fn find_pool(api: &Api, cognito: &Cognito, ctx: &Context) -> Result<Option<FoundPool>> {
    let resource = cognito.pool_resource();
    match &cognito.pool {
        Pool::Existing(id) => Ok(describe_pool(api, &resource, id)
            .await?
            .map(|pool| FoundPool { pool, owned: false })),
        Pool::Create(name) => {
            let pools: Vec<_> = api
                .client
                .list_user_pools()
                .max_results(60)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(|e| Error::aws("listing user pools", &resource, e))?;
            for summary in pools.iter().filter(|p| p.name() == Some(name.as_str())) {
                let Some(id) = summary.id() else { continue };
                let Some(pool) = describe_pool(api, &resource, id).await? else {
                    continue;
                };
                let tags = pool.user_pool_tags();
                let ours = tags.is_some_and(|t| {
                    t.get(STACK_TAG).map(String::as_str) == Some(ctx.stack_name())
                        && t.get(MODULE_TAG).map(String::as_str) == Some(ctx.module_id())
                });
                if ours {
                    return Ok(Some(FoundPool { pool, owned: true }));
                }
            }
            Ok(None)
        }
    }
}

async fn ensure_pool(api: &Api, cognito: &Cognito, ctx: &Context) -> Result<FoundPool> {
    let resource = cognito.pool_resource();
    if let Some(found) = find_pool(api, cognito, ctx).await? {
        return Ok(found);
    }
    let Pool::Create(name) = &cognito.pool else {
        return Err(Error::NotFound {
            action: "adopting the user pool".into(),
            resource,
            message:
                "no user pool with this id in this account and region; check the id and region"
                    .into(),
        });
    };
    ctx.progress(format!("creating {resource}"));
    let out = api
        .client
        .create_user_pool()
        .pool_name(name)
        .user_pool_tags(STACK_TAG, ctx.stack_name())
        .user_pool_tags(MODULE_TAG, ctx.module_id())
        .auto_verified_attributes(VerifiedAttributeType::Email)
        .admin_create_user_config(
            AdminCreateUserConfigType::builder()
                .allow_admin_create_user_only(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("creating the user pool", &resource, e))?;
    let pool = out.user_pool.ok_or_else(|| Error::NotFound {
        action: "creating the user pool".into(),
        resource,
        message: "the response has no pool".into(),
    })?;
    Ok(FoundPool { pool, owned: true })
}

async fn ensure_domain(
    api: &Api,
    cognito: &Cognito,
    ctx: &Context,
    pool: &FoundPool,
) -> Result<()> {
    let prefix = &cognito.domain_prefix;
    let resource = format!("Cognito domain `{prefix}`");
    match pool.pool.domain() {
        Some(d) if d == prefix => return Ok(()),
        Some(other) => {
            return Err(Error::ReplacementRequired {
                resource: format!("the domain of {}", cognito.pool_resource()),
                fields: vec![format!(
                    "domain_prefix: {other} -> {prefix} (a pool has one domain)"
                )],
            });
        }
        None => {}
    }
    let taken = api
        .client
        .describe_user_pool_domain()
        .domain(prefix)
        .send()
        .await
        .map_err(|e| Error::aws("looking the domain up", &resource, e))?;
    if let Some(owner) = taken.domain_description().and_then(|d| d.user_pool_id()) {
        if owner == pool.id() {
            return Ok(());
        }
        return Err(Error::ResourceInUse {
            action: "creating the domain".into(),
            resource,
            message: format!(
                "it belongs to another user pool ({owner}); choose another `.domain_prefix(..)`"
            ),
        });
    }
    ctx.progress(format!("creating {resource}"));
    api.client
        .create_user_pool_domain()
        .domain(prefix)
        .user_pool_id(pool.id())
        .send()
        .await
        .map_err(|e| Error::aws("creating the domain", &resource, e))?;
    Ok(())
}

/// The pool's clients by name (the first of each name).
async fn list_clients(
    api: &Api,
    resource: &str,
    pool_id: &str,
) -> Result<BTreeMap<String, String>> {
    let clients: Vec<_> = api
        .client
        .list_user_pool_clients()
        .user_pool_id(pool_id)
        .max_results(60)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(|e| Error::aws("listing app clients", resource, e))?;
    let mut by_name = BTreeMap::new();
    for c in clients {
        if let (Some(name), Some(id)) = (c.client_name, c.client_id) {
            by_name.entry(name).or_insert(id);
        }
    }
    Ok(by_name)
}

async fn client_secret(
    api: &Api,
    resource: &str,
    pool_id: &str,
    client_id: &str,
) -> Result<Secret> {
    let out = api
        .client
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
        .map_err(|e| Error::aws("reading the client secret", resource, e))?;
    Ok(Secret::new(
        out.user_pool_client
            .and_then(|c| c.client_secret)
            .unwrap_or_default(),
    ))
}

async fn ensure_clients(
    api: &Api,
    cognito: &Cognito,
    ctx: &Context,
    pool_id: &str,
) -> Result<BTreeMap<String, (String, Secret)>> {
    let existing = list_clients(api, &cognito.pool_resource(), pool_id).await?;
    let mut out = BTreeMap::new();
    for client in &cognito.clients {
        let resource = format!(
            "app client `{}` of {}",
            client.name,
            cognito.pool_resource()
        );
        let flows = vec![OAuthFlowType::Code];
        let scopes: Vec<String> = SCOPES.iter().map(|s| (*s).to_owned()).collect();
        let logout = (!client.logout_uris.is_empty()).then(|| client.logout_uris.clone());
        let id = if let Some(id) = existing.get(&client.name) {
            // UpdateUserPoolClient resets what it is not given: every setting is given again.
            api.client
                .update_user_pool_client()
                .user_pool_id(pool_id)
                .client_id(id)
                .client_name(&client.name)
                .set_callback_urls(Some(client.redirect_uris.clone()))
                .set_logout_urls(logout)
                .set_allowed_o_auth_flows(Some(flows))
                .set_allowed_o_auth_scopes(Some(scopes))
                .allowed_o_auth_flows_user_pool_client(true)
                .supported_identity_providers("COGNITO")
                .send()
                .await
                .map_err(|e| Error::aws("updating the app client", &resource, e))?;
            id.clone()
        } else {
            ctx.progress(format!("creating {resource}"));
            let created = api
                .client
                .create_user_pool_client()
                .user_pool_id(pool_id)
                .client_name(&client.name)
                .generate_secret(true)
                .set_callback_urls(Some(client.redirect_uris.clone()))
                .set_logout_urls(logout)
                .set_allowed_o_auth_flows(Some(flows))
                .set_allowed_o_auth_scopes(Some(scopes))
                .allowed_o_auth_flows_user_pool_client(true)
                .supported_identity_providers("COGNITO")
                .send()
                .await
                .map_err(|e| Error::aws("creating the app client", &resource, e))?;
            created
                .user_pool_client
                .and_then(|c| c.client_id)
                .ok_or_else(|| Error::NotFound {
                    action: "creating the app client".into(),
                    resource: resource.clone(),
                    message: "the response has no client id".into(),
                })?
        };
        let secret = client_secret(api, &resource, pool_id, &id).await?;
        out.insert(client.name.clone(), (id, secret));
    }
    Ok(out)
}

/// Creates `group` with the module's marker unless it exists; an existing group (the module's,
/// or anyone's) is used as it is.
async fn ensure_group(
    api: &Api,
    cognito: &Cognito,
    ctx: &Context,
    pool_id: &str,
    group: &str,
) -> Result<()> {
    let resource = format!("group `{group}` of {}", cognito.pool_resource());
    match api
        .client
        .get_group()
        .user_pool_id(pool_id)
        .group_name(group)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            ctx.progress(format!("creating {resource}"));
            api.client
                .create_group()
                .user_pool_id(pool_id)
                .group_name(group)
                .description(group_marker(ctx.stack_name(), ctx.module_id()))
                .send()
                .await
                .map_err(|e| Error::aws("creating the group", &resource, e))?;
            Ok(())
        }
        Err(e) => Err(Error::aws("reading the group", &resource, e)),
    }
}

async fn ensure_group_and_users(
    api: &Api,
    cognito: &Cognito,
    ctx: &Context,
    pool_id: &str,
) -> Result<()> {
    for group in cognito.groups(ctx) {
        ensure_group(api, cognito, ctx, pool_id, &group).await?;
    }
    let group = &cognito.admin_group;
    for user in cognito.users.values() {
        let what = format!("user `{}` of {}", user.username, cognito.pool_resource());
        match api
            .client
            .admin_get_user()
            .user_pool_id(pool_id)
            .username(&user.username)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                ctx.progress(format!("creating {what}"));
                let attribute = |name: &str, value: &str| {
                    AttributeType::builder().name(name).value(value).build()
                };
                api.client
                    .admin_create_user()
                    .user_pool_id(pool_id)
                    .username(&user.username)
                    .user_attributes(attribute("email", &user.email).map_err(|e| {
                        Error::Config {
                            problem: e.to_string(),
                            fix: "check the user's email".into(),
                        }
                    })?)
                    .user_attributes(attribute("email_verified", "true").map_err(|e| {
                        Error::Config {
                            problem: e.to_string(),
                            fix: "report this bug".into(),
                        }
                    })?)
                    .desired_delivery_mediums(DeliveryMediumType::Email)
                    .send()
                    .await
                    .map_err(|e| Error::aws("creating the user", &what, e))?;
            }
            Err(e) => return Err(Error::aws("reading the user", &what, e)),
        }
        if user.admin {
            // Adding a member again is a no-op in Cognito.
            api.client
                .admin_add_user_to_group()
                .user_pool_id(pool_id)
                .username(&user.username)
                .group_name(group)
                .send()
                .await
                .map_err(|e| Error::aws(format!("adding the user to group `{group}`"), &what, e))?;
        }
    }
    Ok(())
}

pub(super) async fn apply(cognito: &Cognito, ctx: &Context) -> Result<CognitoOidc> {
    let api = api(cognito).await?;
    let pool = ensure_pool(&api, cognito, ctx).await?;
    ensure_domain(&api, cognito, ctx, &pool).await?;
    let clients = ensure_clients(&api, cognito, ctx, pool.id()).await?;
    ensure_group_and_users(&api, cognito, ctx, pool.id()).await?;
    Ok(cognito.output(ctx, &api.region, pool.id(), clients))
}

pub(super) async fn read(cognito: &Cognito, ctx: &Context) -> Result<Option<CognitoOidc>> {
    let api = api(cognito).await?;
    let Some(pool) = find_pool(&api, cognito, ctx).await? else {
        return Ok(None);
    };
    let resource = cognito.pool_resource();
    let existing = list_clients(&api, &resource, pool.id()).await?;
    let mut clients = BTreeMap::new();
    for client in &cognito.clients {
        if let Some(id) = existing.get(&client.name) {
            let secret = client_secret(&api, &resource, pool.id(), id).await?;
            clients.insert(client.name.clone(), (id.clone(), secret));
        }
    }
    Ok(Some(cognito.output(ctx, &api.region, pool.id(), clients)))
}

async fn delete_domain(
    api: &Api,
    cognito: &Cognito,
    ctx: &Context,
    pool: &FoundPool,
) -> Result<()> {
    let Some(domain) = pool.pool.domain() else {
        return Ok(());
    };
    // In an adopted pool, only the module's own prefix is deleted.
    if !pool.owned && domain != cognito.domain_prefix {
        return Ok(());
    }
    let resource = format!("Cognito domain `{domain}`");
    ctx.progress(format!("deleting {resource}"));
    match api
        .client
        .delete_user_pool_domain()
        .domain(domain)
        .user_pool_id(pool.id())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::aws("deleting the domain", resource, e)),
    }
}

pub(super) async fn destroy(cognito: &Cognito, ctx: &Context) -> Result<()> {
    let api = api(cognito).await?;
    let resource = cognito.pool_resource();
    let Some(pool) = find_pool(&api, cognito, ctx).await? else {
        ctx.progress(format!(
            "{resource} does not exist or is not the module's; nothing to destroy"
        ));
        return Ok(());
    };
    delete_domain(&api, cognito, ctx, &pool).await?;
    if pool.owned {
        ctx.progress(format!("deleting {resource}"));
        return match api
            .client
            .delete_user_pool()
            .user_pool_id(pool.id())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::aws("deleting the user pool", resource, e)),
        };
    }
    // An adopted pool keeps everything but the module's clients and marked group.
    let existing = list_clients(&api, &resource, pool.id()).await?;
    for client in &cognito.clients {
        let Some(id) = existing.get(&client.name) else {
            continue;
        };
        let what = format!("app client `{}` of {resource}", client.name);
        ctx.progress(format!("deleting {what}"));
        match api
            .client
            .delete_user_pool_client()
            .user_pool_id(pool.id())
            .client_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::aws("deleting the app client", what, e)),
        }
    }
    for group in cognito.groups(ctx) {
        delete_marked_group(&api, ctx, &resource, pool.id(), &group).await?;
    }
    Ok(())
}

/// Deletes `group` when its description is the module's marker: the module created it. A group
/// that existed before (someone else's) stays.
async fn delete_marked_group(
    api: &Api,
    ctx: &Context,
    resource: &str,
    pool_id: &str,
    group: &str,
) -> Result<()> {
    let what = format!("group `{group}` of {resource}");
    let marker = group_marker(ctx.stack_name(), ctx.module_id());
    match api
        .client
        .get_group()
        .user_pool_id(pool_id)
        .group_name(group)
        .send()
        .await
    {
        Ok(out) if out.group.as_ref().and_then(|g| g.description()) == Some(marker.as_str()) => {
            ctx.progress(format!("deleting {what}"));
            match api
                .client
                .delete_group()
                .user_pool_id(pool_id)
                .group_name(group)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(Error::aws("deleting the group", what, e)),
            }
        }
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::aws("reading the group", what, e)),
    }
}
