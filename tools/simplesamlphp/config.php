<?php
/*
 * SimpleSAMLphp 1.19 configuration for jitledger's live-IdP test: a SAML 2.0 IdP only,
 * everything it writes kept under the scratch directory that `setup` was given.
 * `params.php` (written by `setup`) holds that directory and the IdP's base URL.
 */
$params = require __DIR__ . '/params.php';
$scratch = $params['scratch'];

$config = [
    'baseurlpath' => $params['base_url'],
    'certdir' => $scratch . '/cert/',
    'loggingdir' => $scratch . '/log/',
    'datadir' => $scratch . '/data/',
    'tempdir' => $scratch . '/tmp/',
    'metadatadir' => $scratch . '/metadata/',
    'attributenamemapdir' => $scratch . '/attributemap/',

    'secretsalt' => $params['secret_salt'],
    'auth.adminpassword' => $params['admin_password'],
    'admin.protectindexpage' => true,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    'trusted.url.domains' => [],

    'timezone' => 'UTC',
    'technicalcontact_name' => 'jitledger tests',
    'technicalcontact_email' => 'na@example.org',

    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'showerrors' => true,
    'errorreporting' => false,
    'production' => false,

    'logging.level' => SimpleSAML\Logger::INFO,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'statistics.out' => [],

    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => [
        'exampleauth' => true,
        'core' => true,
        'saml' => true,
        'admin' => true,
    ],

    // Plain HTTP on 127.0.0.1: the cookies cannot be Secure.
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.cookie.path' => '/',
    'session.phpsession.cookiename' => 'SimpleSAML',
    'session.phpsession.savepath' => $scratch . '/sessions',
    'session.phpsession.httponly' => true,
    'session.authtoken.cookiename' => 'SimpleSAMLAuthToken',
    'language.cookie.secure' => false,
    'language.cookie.samesite' => null,

    'store.type' => 'phpsession',
    'metadata.sources' => [
        ['type' => 'flatfile'],
    ],
    'metadata.sign.enable' => false,
    'theme.use' => 'default',
];
